"""The test tree mirrors src/pixelseg (tests/README.md): every package under src/pixelseg has its folder at the
same place under tests/ (src/pixelseg/data/formats -> tests/data/formats), each of those folders holds at least
one test that plain `pytest` runs (not marked slow, not skipped), every test folder is a package (helpers import
as `from tests.helpers import ...`) and no two test files share a name."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "pixelseg"
TESTS = ROOT / "tests"

# src packages with no tests/<package> folder of their own, each with the reason. None today; a package named
# here must exist and must not have a folder (test_exemptions_are_current), so the list cannot go stale.
EXEMPT: dict[str, str] = {}


def src_packages(src: Path) -> list[str]:
    """'cli', 'data', 'data/formats', ...: every folder below src that is a package (has an __init__.py)."""
    return sorted(p.parent.relative_to(src).as_posix() for p in src.rglob("__init__.py") if p.parent != src)


def missing_folders(src: Path, tests: Path, exempt) -> list[str]:
    return [pkg for pkg in src_packages(src) if pkg not in exempt and not (tests / pkg).is_dir()]


def without_fast_tests(packages, tests: Path, rows) -> list[str]:
    """The packages whose folder tests/<package> itself (not a subfolder) has no collected test that is neither
    marked slow nor skip. rows: (test file, slow, skip) per collected test, as tests/conftest.py records them."""
    fast = {Path(path).parent for path, slow, skip in rows if not slow and not skip}
    return [pkg for pkg in packages if tests / pkg not in fast]


def collect(folders, tmp_path: Path) -> list:
    """(test file, slow, skip) for every test in these folders, from `pytest --collect-only` in a subprocess."""
    out = tmp_path / "collected.json"
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-p", "no:cacheprovider", *map(str, folders)],
                       cwd=ROOT, env=dict(os.environ, PIXELSEG_COLLECTED_JSON=str(out)), capture_output=True,
                       text=True, timeout=600)
    assert p.returncode in (0, 5) and out.is_file(), p.stdout[-3000:] + p.stderr[-3000:]   # 5: all deselected
    return json.loads(out.read_text())


def test_every_src_package_has_a_tests_folder():
    packages = src_packages(SRC)
    assert {"cli", "data", "data/formats", "models", "serve"} <= set(packages)      # the walk finds them
    assert missing_folders(SRC, TESTS, EXEMPT) == [], "add the folder (with an __init__.py) or an EXEMPT entry"


def test_exemptions_are_current():
    packages = src_packages(SRC)
    assert [pkg for pkg in EXEMPT if pkg not in packages or (TESTS / pkg).is_dir()] == []


def test_every_package_folder_has_fast_tests(collected, tmp_path):
    """Plain `pytest` (the fast subset) touches every package. What this session collected answers it when the
    session ran the whole tree; folders it did not collect are collected alone, in a subprocess."""
    packages = [pkg for pkg in src_packages(SRC) if pkg not in EXEMPT]
    lacking = without_fast_tests(packages, TESTS, collected)
    if lacking:
        lacking = without_fast_tests(lacking, TESTS, collect([TESTS / pkg for pkg in lacking], tmp_path))
    assert lacking == [], "only slow (or skipped) tests here: keep at least one fast test per package"


def test_test_folders_are_packages_and_test_files_have_unique_names():
    folders = {p.parent for p in TESTS.rglob("*.py")}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file()) == []
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert sorted(name for name, n in names.items() if n > 1) == []


def test_the_checks_fail_on_a_tree_that_does_not_mirror(tmp_path):
    """The checks above can fail: a package without a folder, a folder with only a slow or a skipped test."""
    src, tests = tmp_path / "src", tmp_path / "tests"
    for pkg in ("a", "a/b", "c"):
        (src / pkg).mkdir(parents=True)
        (src / pkg / "__init__.py").touch()
    (tests / "a").mkdir(parents=True)
    assert src_packages(src) == ["a", "a/b", "c"]
    assert missing_folders(src, tests, {}) == ["a/b", "c"]
    assert missing_folders(src, tests, {"a/b": "why", "c": "why"}) == []
    rows = [(str(tests / "a" / "test_x.py"), True, False), (str(tests / "a" / "test_y.py"), False, True),
            (str(tests / "test_top.py"), False, False)]
    assert without_fast_tests(["a"], tests, rows) == ["a"]
    rows.append((str(tests / "a" / "b" / "test_z.py"), False, False))     # a subfolder's test is not a's
    assert without_fast_tests(["a", "a/b"], tests, rows) == ["a"]
    rows.append((str(tests / "a" / "test_w.py"), False, False))
    assert without_fast_tests(["a", "a/b"], tests, rows) == []
