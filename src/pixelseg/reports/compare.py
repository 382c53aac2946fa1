"""Comparing runs: per-class IoU side by side (`compare_runs`, from metrics.json files) and the paired
comparison's page (`paired_page`, from api.compare), each with the runs' settings and a warning when the runs
are not comparable (different classes or data)."""
from __future__ import annotations

from pathlib import Path

from pixelseg.errors import PixelsegError
from pixelseg.fileio import write_text
from pixelseg.reports import html as H
from pixelseg.reports.builder import _minutes
from pixelseg.run.folder import RunFolder


def _load_metrics(path: Path) -> tuple[str, dict]:
    """A run folder (its metrics.json) or a metrics JSON file written by `evaluate --json`."""
    p = RunFolder(path).metrics_path if path.is_dir() else path
    if not p.is_file():
        raise PixelsegError(f"{path}: no {p.name}; give finished run folders or files written by "
                            "`pixelseg evaluate --json`")
    m = RunFolder.read_json(p)
    if not isinstance(m.get("per_class"), dict):
        raise PixelsegError(f"{p}: has no per-class metrics; it is not a pixelseg metrics file")
    return (path.name if path.is_dir() else path.stem), m


def compare_runs(runs, out=None, png=None) -> dict:
    """Per-class IoU of several runs side by side. Returns {"labels", "classes", "iou": {label: [..]},
    "mIoU": {label: v}, "warnings": [why the comparison may mislead]}; writes a bar chart PNG (`png`) and an HTML page (`out`) when asked."""
    if len(runs) < 2:
        raise PixelsegError("compare needs at least two runs (or metrics JSON files)")
    loaded = [_load_metrics(Path(r)) for r in runs]
    labels = []
    for (name, _), r in zip(loaded, runs):
        # two runs called 'run' in different folders: name them by their parent too
        labels.append(f"{Path(r).parent.name}/{name}" if [n for n, _ in loaded].count(name) > 1 else name)
    if len(set(labels)) < len(labels):
        labels = [str(r) for r in runs]
    if len(set(labels)) < len(labels):          # the same run given twice
        labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    classes: list[str] = []
    for _, m in loaded:
        for c in m["per_class"]:
            if c not in classes:
                classes.append(c)
    iou = {lab: [m["per_class"].get(c, {}).get("iou") for c in classes] for lab, (_, m) in zip(labels, loaded)}
    result = {"labels": labels, "classes": classes, "iou": iou,
              "mIoU": {lab: m.get("mIoU") for lab, (_, m) in zip(labels, loaded)},
              "warnings": comparability(runs, loaded)}
    if png or out:
        from pixelseg.reports import plots
        chart = plots.save_figure(plots.compare_bars(classes, iou, result["mIoU"]), png or Path(out).with_suffix(".png"))
        result["png"] = str(chart)
    if out:
        out = Path(out)
        if out.suffix.lower() not in (".html", ".htm"):
            raise PixelsegError(f"{out}: the comparison is an HTML page; give a path ending in .html")
        head = "<tr><th class=l>class</th>" + "".join(f"<th>{H.escape(l)}</th>" for l in labels)
        head += "<th>Δ (last − first)</th></tr>" if len(labels) == 2 else "</tr>"
        rows = []
        for i, c in enumerate(classes):
            vals = [iou[lab][i] for lab in labels]
            cells = "".join(f'<td data-value="{H.num_attr(v)}">{H.pct(v)}</td>' for v in vals)
            if len(labels) == 2:
                d = None if None in vals else vals[1] - vals[0]
                cells += f'<td data-value="{H.num_attr(d)}">{"—" if d is None else f"{100 * d:+.1f}"}</td>'
            rows.append(f'<tr data-class="{H.escape(c)}"><td class="l">{H.escape(c)}</td>{cells}</tr>')
        means = [result["mIoU"][lab] for lab in labels]
        foot = "<tr><th class=l>mIoU</th>" + "".join(f"<th>{H.pct(v)}</th>" for v in means)
        if len(labels) == 2:
            d = None if None in means else means[1] - means[0]
            foot += f"<th>{'—' if d is None else f'{100 * d:+.1f}'}</th>"
        table = (f'<table id="compare"><thead>{head}</thead><tbody>{"".join(rows)}</tbody>'
                 f"<tfoot>{foot}</tr></tfoot></table>")
        sources = run_settings_table(labels, runs)
        warn = "".join(f'<p class="warn">{H.escape(w)}</p>' for w in result["warnings"])
        sections = [("runs", "Runs", warn + sources), ("table", "Per-class IoU (%)", table),
                    ("chart", "Chart", H.img_tag(chart, "per-class IoU by run"))]
        write_text(out, H.page("pixelseg compare", f"{len(labels)} runs, {len(classes)} classes", sections))
        result["html"] = str(out)
    return result


SETTING_KEYS = (("model", "model.name"), ("encoder", "model.encoder"), ("encoder weights", "model.encoder_weights"),
                ("data", "data.root"), ("input", "data.image_size"), ("scale", "data.scale"), ("crop", "data.crop"),
                ("batch", "train.batch_size"), ("lr", "train.lr"), ("epochs", "train.epochs"),
                ("minutes", "train.max_minutes"), ("augment", "data.augment"), ("seed", "train.seed"))


def _settings(run) -> dict[str, str]:
    """The settings that make two runs differ, from a run folder's config.yaml and metrics.json ({} for a
    metrics JSON file)."""
    folder = RunFolder(run)
    if not Path(run).is_dir():
        return {}
    cfg = folder.config_dict()
    out = {}
    for label, key in SETTING_KEYS:
        section, name = key.split(".")
        v = (cfg.get(section) or {}).get(name)
        if v is not None:
            out[label] = "x".join(map(str, v)) if isinstance(v, list) else str(v)
    m = folder.metrics() or {}
    if m.get("train_seconds") is not None:
        out["trained"] = _minutes(m.get("train_seconds"))
    return out


def run_settings_table(labels, runs) -> str:
    """Each run's settings side by side (those that differ first, marked), so a comparison shows what changed."""
    settings = [_settings(r) for r in runs]
    keys = [k for k, _ in SETTING_KEYS] + ["trained"]
    keys = [k for k in keys if any(k in s for s in settings)]
    differ = [k for k in keys if len({s.get(k) for s in settings}) > 1]
    head = "<tr><th class=l>setting</th>" + "".join(f"<th>{H.escape(l)}</th>" for l in labels) + "</tr>"
    rows = ['<tr><td class="l">path</td>' + "".join(f"<td>{H.escape(str(r))}</td>" for r in runs) + "</tr>"]
    for k in differ + [k for k in keys if k not in differ]:
        mark = " ≠" if k in differ else ""
        rows.append(f'<tr data-setting="{H.escape(k)}"><td class="l">{H.escape(k)}{mark}</td>'
                    + "".join(f"<td>{H.escape(s.get(k, '—'))}</td>" for s in settings) + "</tr>")
    return f'<table id="runs"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def comparability(runs, loaded=None) -> list[str]:
    """Why a comparison may mislead: the runs' classes differ, or they were trained and scored on different data."""
    out = []
    if loaded is not None:
        tables = [tuple(m["per_class"]) for _, m in loaded]
        if len(set(tables)) > 1:
            out.append("the runs have different classes: a class missing from a run shows as '—', and the mIoU "
                       "values average different classes")
    roots = {_settings(r).get("data") for r in runs} - {None}
    if len(roots) > 1:
        out.append(f"the runs were trained on different data ({', '.join(sorted(roots))}): their own validation "
                   "scores are not measured on the same images; compare them with --data ROOT (paired)")
    return out


def paired_page(r: dict, runs, out) -> Path:
    """The paired comparison (api.compare's result) as an HTML page: A, B, A - B with its interval and
    P(A > B) per class, the verdict, and each run's settings."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise PixelsegError(f"{out}: the comparison is an HTML page; give a path ending in .html")
    na, nb = r["names"]

    def diff(c) -> str:
        if c["difference"] is None:
            return "—"
        ci = "" if c["low"] is None else f" [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]"
        return f"{100 * c['difference']:+.1f}{ci}"

    def prob(c) -> str:
        return "—" if c["prob_a_better"] is None else f"{100 * c['prob_a_better']:.1f}%"
    rows = [f'<tr data-class="{H.escape(name)}"><td class="l">{H.escape(name)}</td>'
            f'<td>{H.pct(r["a"]["per_class"][name]["iou"])}</td><td>{H.pct(r["b"]["per_class"][name]["iou"])}</td>'
            f"<td>{diff(c)}</td><td>{prob(c)}</td></tr>" for name, c in r["per_class_iou"].items()]
    foot = "".join(f'<tr><th class=l>{label}</th><th>{H.pct(r["a"][key])}</th><th>{H.pct(r["b"][key])}</th>'
                   f"<th>{diff(r[key])}</th><th>{prob(r[key])}</th></tr>"
                   for label, key in (("mIoU", "mIoU"), ("pixel accuracy", "pixel_accuracy")))
    table = ('<table id="paired"><thead><tr><th class=l>class</th><th>A</th><th>B</th><th>A − B [interval]</th>'
             f'<th>P(A &gt; B)</th></tr></thead><tbody>{"".join(rows)}</tbody><tfoot>{foot}</tfoot></table>'
             f'<p class="sub">IoU in %; A − B in points with its {100 * r["level"]:g}% interval (paired bootstrap over '
             f'images, {r["n_boot"]} resamples); P(A &gt; B) = share of resamples where A is higher.</p>')
    verdict = f'<p id="verdict"><b>verdict:</b> {H.escape(r["verdict"])}</p>'
    warn = "".join(f'<p class="warn">{H.escape(w)}</p>' for w in comparability(runs)
                   if not w.startswith("the runs were trained on different data"))
    sections = [("verdict", "Verdict", verdict + table), ("runs", "Runs", warn + run_settings_table(["A", "B"], runs))]
    write_text(out, H.page("pixelseg compare (paired)", f"A = {na}, B = {nb}: split '{r['split']}' of {r['data']}, "
                           f"{r['images']} images", sections))
    return out
