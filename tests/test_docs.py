"""The README and docs/ say only what holds: the README stays a guide (short), every link between the pages
resolves, nothing points outside the repository, every `pixelseg VERB` and `--flag` in the README's and docs'
command lines exists in the real parser, and the README's "Two commands" are the scripts in scripts/.

Fast and offline: reads Markdown files and builds the CLI's argparse parser (no command runs)."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 260

# [text](target) -- not images' alt text nor reference-style links, which these pages do not use
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# "../" that climbs a folder; "..." (an ellipsis) followed by "/" is not one
PARENT = re.compile(r"(?<![.\w])\.\./")
FENCE = re.compile(r"^(```|~~~)")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def page_id(p: Path) -> str:
    return str(p.relative_to(ROOT))


def code_lines(text: str) -> list[str]:
    """Lines inside fenced blocks and 4-space indented blocks (the Markdown code the pages hold)."""
    out, fenced, prev_blank = [], False, True
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced or (line.startswith("    ") and (prev_blank or (out and out[-1] is not None))):
            out.append(line)
        else:
            out.append(None)       # a break: an indented line after prose is a list continuation, not code
        prev_blank = not line.strip()
    return [line for line in out if line is not None]


def commands(text: str) -> list[str]:
    """The command lines in a page's code: backslash continuations joined, comments dropped."""
    joined, cur = [], ""
    for line in code_lines(text):
        line = line.split(" #")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        joined.append(cur + line)
        cur = ""
    if cur:
        joined.append(cur)
    return [c for c in joined if c.strip()]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(p: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in p.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


# ------------------------------------------------------------------------------------------ the CLI's verbs

def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


@lru_cache(maxsize=1)
def cli() -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    """verb -> (its options, {sub-verb: its options}) from the real parser. The parser is built by
    pixelseg.cli.main.build_parser; should that entry point move, `python -m pixelseg VERB --help` is read."""
    try:
        from pixelseg.cli.main import build_parser
    except ImportError:
        return _cli_from_help()
    out = {}
    for verb, p in _subparsers(build_parser()).items():
        out[verb] = (_options(p), {s: _options(sp) for s, sp in _subparsers(p).items()})
    return out


def _help(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "pixelseg", *args, "--help"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _listed(help_text: str) -> list[str]:
    """The sub-commands a --help lists under "positional arguments": 4-space indented names (a plain positional
    argument such as RUN is indented by 2, wrapped help text by more)."""
    block = help_text.split("positional arguments:", 1)[-1].split("options:", 1)[0]
    return [m.group(1) for m in re.finditer(r"^    ([a-z][a-z0-9-]*)", block, re.M)]


def _cli_from_help() -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    out = {}
    for verb in _listed(_help()):
        text = _help(verb)
        subs = {s: set(re.findall(r"--[a-z][a-z0-9-]*", _help(verb, s))) for s in _listed(text)}
        out[verb] = (set(re.findall(r"--[a-z][a-z0-9-]*", text)) | {"--help"}, subs)
    return out


# "pixelseg VERB ..." as a command (after a prompt, torchrun's -m, or at the start of a line), not a package
# name in prose or an image name in `docker ... -t pixelseg`
INVOCATION = re.compile(r"(?:^|[;&|(]\s*|-m\s+|\bbin/)pixelseg\s+([a-z][a-z0-9-]*)(.*)$")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def invocations(text: str) -> list[tuple[str, str]]:
    out = []
    for c in commands(text):
        m = INVOCATION.search(c.strip())
        if m:
            out.append((m.group(1), m.group(2)))
    return out


# ------------------------------------------------------------------------------------------------- tests

def test_readme_is_a_guide_not_a_manual():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move reference text to docs/ (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_relative_link_resolves_inside_the_repository(page):
    bad = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):          # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page.resolve()
        if not dest.is_relative_to(ROOT):
            bad.append(f"{target}: leaves the repository")
        elif not dest.exists():
            bad.append(f"{target}: {dest.relative_to(ROOT)} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with the anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not bad, f"{page_id(page)}: " + "; ".join(bad)


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_no_path_leaves_the_repository(page):
    """A path like ../shared/x names something a clone does not have. Links are checked above (docs/ may link
    ../README.md); outside links, no "../" at all."""
    text = LINK.sub(lambda m: m.group(0).replace(m.group(1), ""), page.read_text(encoding="utf-8"))
    hits = [line.strip() for line in text.splitlines() if PARENT.search(line)]
    assert not hits, f"{page_id(page)} names paths outside the repository: {hits[:3]}"


def test_the_docs_table_of_contents_lists_every_page():
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(README.read_text(encoding="utf-8"))
              if t.startswith("docs/")}
    on_disk = {p.name for p in DOCS.glob("*.md")}
    assert on_disk <= linked, f"docs pages the README does not link: {sorted(on_disk - linked)}"


def test_readme_commands_use_real_verbs():
    verbs = cli()
    assert {"train", "evaluate", "predict", "serve", "export"} <= set(verbs)   # the parser was read
    found = invocations(README.read_text(encoding="utf-8"))
    assert len(found) >= 10, f"too few `pixelseg VERB` lines found in the README's code: {found}"
    unknown = sorted({v for v, _ in found if v not in verbs})
    assert not unknown, f"README code uses `pixelseg {unknown[0]}`, not a command (commands: {sorted(verbs)})"


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_command_lines_use_real_verbs_and_flags(page):
    """Every `pixelseg VERB [SUB] ... --flag` in a page's code exists in that command's parser."""
    verbs = cli()
    bad = []
    for verb, rest in invocations(page.read_text(encoding="utf-8")):
        if verb not in verbs:
            bad.append(f"pixelseg {verb}: no such command")
            continue
        options, subs = verbs[verb]
        if subs:
            words = re.findall(r"[a-z][a-z0-9-]*", rest.split("--")[0])
            sub = next((w for w in words if w in subs), None)
            if words and sub is None and not rest.lstrip().startswith(("-", "[")):
                bad.append(f"pixelseg {verb} {words[0]}: no such sub-command (has {sorted(subs)})")
                continue
            options = options | subs.get(sub, set())
        for flag in FLAG.findall(rest):
            if flag not in options:
                bad.append(f"pixelseg {verb}: no option {flag}")
    assert not bad, f"{page_id(page)}: " + "; ".join(sorted(set(bad)))


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def test_the_two_commands_are_the_scripts_and_come_first():
    text = README.read_text(encoding="utf-8")
    head = text.splitlines()[:40]
    assert "## Two commands" in head, "the 'Two commands' section must be on the README's first screen (40 lines)"
    section = _section(text, "Two commands")
    cmds = [line.split("#")[0].strip() for line in code_lines(section) if line.strip().startswith("bash scripts/")]
    assert cmds == ["bash scripts/quickstart.sh", "bash scripts/test.sh"], cmds
    quickstart = (ROOT / "scripts" / "quickstart.sh").read_text(encoding="utf-8")
    tests = (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "scripts/setup.sh" in quickstart and re.search(r"pixelseg quickstart\b", quickstart), \
        "scripts/quickstart.sh no longer sets up and runs `pixelseg quickstart`"
    assert "scripts/setup.sh" in tests and re.search(r"-m pytest\b", tests), \
        "scripts/test.sh no longer sets up and runs pytest"
    assert re.search(r'\bexec \S*pytest "\$@"|-m pytest "\$@"', tests), \
        "scripts/test.sh no longer passes its arguments to pytest (the README's fast subset needs it)"
    assert 'bash scripts/test.sh -m "not slow"' in section, "the fast subset is named beside the two commands"
