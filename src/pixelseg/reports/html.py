"""One self-contained HTML page: inline CSS, PNGs embedded as data: URIs, no script, no network.

The page is built from escaped strings (html.escape on every value that comes from a user: class names,
paths, stems); a template engine would be one more dependency for a page with no logic. Tables carry
the raw numbers in data-* attributes so tools (and the tests) can read them back exactly.
"""
from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1c1c1c;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:12px 0 2px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 12px} .note{color:#8a5a00;background:#fff6e0;padding:6px 10px;border-radius:4px} .legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px} .warn{color:#8a1010;background:#fde8e8;padding:8px 12px;border-radius:4px;font-weight:600}
nav a{margin-right:12px;color:#2255aa;text-decoration:none}
table{border-collapse:collapse;margin:8px 0;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #e2e2e2;padding:3px 8px;text-align:right;vertical-align:middle}
th{background:#f0f0f0} td.l,th.l{text-align:left}
.kv td:first-child{color:#555;text-align:left} .kv td{text-align:left}
.sw{display:inline-block;width:11px;height:11px;border:1px solid #777;margin-right:6px;vertical-align:-1px}
img.plot{max-width:100%;height:auto;display:block;margin:6px 0;background:#fff}
img.panel{max-width:100%;height:auto;display:block}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}
.gallery td{text-align:left}
.dim{color:#999} details{margin:8px 0}
table.cm td{min-width:34px;text-align:center;font-size:12px} table.cm th{font-size:11px}
"""


def img_tag(path: str | Path, alt: str, cls: str = "plot") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img class="{cls}" alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def pct(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{100.0 * v:.{digits}f}"


def num_attr(v) -> str:
    """The exact value for a data-value attribute ('' for undefined)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return repr(float(v)) if isinstance(v, float) else str(v)


def swatch(color) -> str:
    r, g, b = (int(c) for c in color)
    return f'<span class="sw" style="background:rgb({r},{g},{b})"></span>'


def kv_table(rows: list[tuple[str, str]], table_id: str) -> str:
    body = "".join(f'<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>' for k, v in rows)
    return f'<table class="kv" id="{table_id}"><tbody>{body}</tbody></table>'


def cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card">{escape(label)}<b>{escape(value)}</b></div>' for label, value in items) + "</div>"


def _ci_cell(ci) -> str:
    if not ci:
        return '<td data-key="iou_ci" data-value="">—</td>'
    return f'<td data-key="iou_ci" data-value="{ci[0]!r},{ci[1]!r}">{pct(ci[0])} – {pct(ci[1])}</td>'


def per_class_table(summary: dict, colors) -> str:
    """One row per class; with intervals in the summary (evaluation.add_intervals) an IoU interval column."""
    with_ci = "ci" in summary
    total = summary.get("num_pixels") or 0
    pred_total = sum(c["pred_pixels"] for c in summary["per_class"].values()) or 0
    absent = set(summary.get("classes_absent", []))
    rows = []
    for (name, c), color in zip(summary["per_class"].items(), colors):
        note = " <span class=dim>(absent)</span>" if name in absent else (
            " <span class=dim>(not in GT)</span>" if c["gt_pixels"] == 0 else "")
        gt_share = c["gt_pixels"] / total if total else None
        pred_share = c["pred_pixels"] / pred_total if pred_total else None
        cells = "".join(f'<td data-key="{k}" data-value="{num_attr(v)}">{pct(v)}</td>' for k, v in
                        (("iou", c["iou"]), ("accuracy", c["accuracy"]), ("dice", c["dice"]),
                         ("gt_share", gt_share), ("pred_share", pred_share)))
        if with_ci:
            cells = cells.replace("</td>", "</td>" + _ci_cell(c.get("iou_ci")), 1)
        rows.append(f'<tr data-class="{escape(name)}"><td class="l">{swatch(color)}{escape(name)}{note}</td>{cells}'
                    f'<td data-key="gt_pixels" data-value="{c["gt_pixels"]}">{c["gt_pixels"]:,}</td></tr>')
    ci_head = f"<th>IoU {100 * summary['ci']['level']:g}% interval</th>" if with_ci else ""
    head = (f"<tr><th class=l>class</th><th>IoU %</th>{ci_head}<th>accuracy %</th><th>dice %</th><th>GT pixels %</th>"
            "<th>predicted %</th><th>GT pixels</th></tr>")
    return f'<table id="per-class"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def confusion_table(cm, norm, names, shown: list[int]) -> str:
    """The heatmap's numbers: % of the row's ground-truth pixels, with the raw count in data-count."""
    head = "<tr><th class=l>GT \\ predicted</th>" + "".join(f"<th>{escape(names[j])}</th>" for j in shown) + "</tr>"
    rows = []
    for i in shown:
        cells = "".join(
            f'<td data-count="{int(cm[i][j])}" title="{int(cm[i][j]):,} px">{pct(norm[i][j], 1)}</td>' for j in shown)
        rows.append(f'<tr data-class="{escape(names[i])}"><th class="l">{escape(names[i])}</th>{cells}</tr>')
    return f'<table class="cm" id="confusion"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def pairs_table(pairs, names) -> str:
    if not pairs:
        return "<p>No pixel of one class was predicted as another.</p>"
    head = "<tr><th class=l>ground truth</th><th class=l>predicted as</th><th>pixels</th><th>% of the GT class</th></tr>"
    rows = "".join(f'<tr><td class="l">{escape(names[i])}</td><td class="l">{escape(names[j])}</td>'
                   f'<td data-value="{n}">{n:,}</td><td data-value="{num_attr(s)}">{pct(s)}</td></tr>'
                   for i, j, n, s in pairs)
    return f'<table id="confused-pairs"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def gallery_table(items: list[tuple[dict, Path]], table_id: str) -> str:
    """items: ({"rank", "stem", "mIoU", "pixel_accuracy", "unsure"}, panel png)."""
    rows = []
    for row, png in items:
        unsure = f"<br>unsure pixels {pct(row['unsure'])}%" if row.get("unsure") is not None else ""
        rows.append(f'<tr data-stem="{escape(row["stem"])}" data-miou="{num_attr(row["mIoU"])}">'
                    f'<td>#{row["rank"]} <b>{escape(row["stem"])}</b><br>mIoU {pct(row["mIoU"])}%<br>'
                    f'pixel acc. {pct(row["pixel_accuracy"])}%{unsure}</td>'
                    f'<td>{img_tag(png, "prediction panel of " + row["stem"], "panel")}</td></tr>')
    return f'<table class="gallery" id="{table_id}"><tbody>{"".join(rows)}</tbody></table>'


def per_image_table(rows: list[dict]) -> str:
    unsure = any(r.get("unsure") is not None for r in rows)
    head = ("<tr><th>#</th><th class=l>image</th><th>mIoU %</th><th>pixel acc. %</th>"
            + ("<th>unsure %</th>" if unsure else "") + "</tr>")
    body = "".join(
        f'<tr data-stem="{escape(r["stem"])}"><td>{n}</td><td class="l">{escape(r["stem"])}</td>'
        f'<td data-value="{num_attr(r["mIoU"])}">{pct(r["mIoU"])}</td><td>{pct(r["pixel_accuracy"])}</td>'
        + (f"<td>{pct(r.get('unsure'))}</td>" if unsure else "") + "</tr>"
        for n, r in enumerate(rows, 1))
    return f'<table id="per-image"><thead>{head}</thead><tbody>{body}</tbody></table>'


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """sections: (anchor id, heading, inner html)."""
    nav = "".join(f'<a href="#{sid}">{escape(h)}</a>' for sid, h, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(h)}</h2>{inner}</section>' for sid, h, inner in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>"
            f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p><nav>{nav}</nav>{body}'
            f"</main></body></html>\n")
