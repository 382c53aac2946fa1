"""The galleries of `pixelseg audit` and `pixelseg suggest`: one self-contained HTML page each (inline CSS
and PNGs as data: URIs, the report's style), every user-given string escaped."""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import cv2
import numpy as np

from pixelseg.viz import overlay as viz
from pixelseg.fileio import write_text
from pixelseg.reports.html import CSS, swatch

BOX_COLOR = (255, 0, 255)      # magenta: stands out on every class color of the default palettes


def png_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def heat(image: np.ndarray, value: np.ndarray, vmax: float = 1.0) -> np.ndarray:
    """``value`` (0..vmax) in red over the gray image: where the model disagrees, or is unsure."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    base = np.repeat((gray * 0.6)[..., None], 3, 2).astype(np.float32)
    a = np.clip(value / max(vmax, 1e-6), 0, 1)[..., None]
    red = np.array([255, 30, 30], np.float32)
    return (base * (1 - a) + red * a).astype(np.uint8)


def draw_boxes(rgb: np.ndarray, boxes, scale: float) -> np.ndarray:
    out = rgb.copy()
    t = max(1, round(max(rgb.shape[:2]) / 200))
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(out, (int(x0 * scale), int(y0 * scale)), (max(int(x0 * scale), int(x1 * scale) - 1),
                      max(int(y0 * scale), int(y1 * scale) - 1)), BOX_COLOR, t)
    return out


def payload(image_path, mask, result, shown: int = 320) -> dict:
    """Small copies of what the audit gallery draws (long side ``shown``): image, mask, model, weight."""
    from pixelseg.data.io import read_image
    img = read_image(image_path, 3)
    if img.shape[:2] != mask.shape:
        img = cv2.resize(img, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_AREA)
    s = min(1.0, shown / max(mask.shape))
    size = (max(1, round(mask.shape[1] * s)), max(1, round(mask.shape[0] * s)))

    def small(a, interp=cv2.INTER_NEAREST):
        return cv2.resize(a, size, interpolation=interp) if s < 1 else a
    return {"image": small(img, cv2.INTER_AREA), "mask": small(mask.astype(np.int32)),
            "pred": small(result["pred"]), "weight": small(result["weight"], cv2.INTER_AREA), "scale": s}


def _page(title: str, sub: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><main><h1>{escape(title)}</h1><p class=sub>{escape(sub)}</p>"
            f"{body}</main></body></html>")


def audit_page(path, result: dict, top: list, classes) -> Path:
    """image | mask | model | disagreement (with region boxes) for the top-scoring images, then the
    ranked table of every image."""
    names = list(classes.names)
    by_stem = {e["stem"]: e for e in result["images"]}
    cards = []
    for score, stem, p in top:
        e = by_stem[stem]
        boxes = [r["box"] for r in e["regions"]]
        dis = draw_boxes(heat(p["image"], p["weight"]), boxes, p["scale"])
        panel = viz.side_by_side(
            [p["image"], viz.overlay(p["image"], p["mask"], classes.colors, ignore_index=classes.ignore_index),
             viz.overlay(p["image"], p["pred"], classes.colors, ignore_index=classes.ignore_index), dis],
            ["image", "mask", "model", "disagreement"])
        regions = "; ".join(f"{r['kind']}: mask {_name(names, r['mask_class'])} → model {_name(names, r['model_class'])}"
                            f" ({r['area']} px)" for r in e["regions"][:4])
        shift = f", mask offset {e['shift']} px" if e.get("shift") else ""
        cards.append(f'<h2>#{e["rank"]} {escape(stem)} — {escape(e["kind"])}, score {score:.4f}{escape(shift)}</h2>'
                     f'<p class=sub>{escape(e["image"])}<br>{escape(regions)}</p>'
                     f'<img class=panel alt="{escape(stem)}" src="{png_uri(panel)}">')
    rows = "".join(f'<tr data-stem="{escape(e["stem"])}"><td>{e["rank"]}</td><td class=l>{escape(e["stem"])}</td>'
                   f'<td class=l>{escape(e["kind"])}</td><td data-value="{e["score"]!r}">{e["score"]:.4f}</td>'
                   f'<td>{len(e["regions"])}</td><td>{"" if e["kappa"] is None else e["kappa"]}</td></tr>'
                   for e in result["images"])
    table = ('<h2>All images, most suspicious first</h2><table id=ranking><thead><tr><th>rank</th><th class=l>image</th>'
             f'<th class=l>kind</th><th>score</th><th>regions</th><th>kappa</th></tr></thead><tbody>{rows}</tbody></table>')
    folds = result["folds"]
    how = f"{folds} held-out fold models" if folds else "the run's own model"
    sub = f"{len(result['images'])} images of the {result['split']} split of {result['data']}, judged by {how}"
    write_text(path, _page("Label audit", sub, legend(classes) + "".join(cards) + table))
    return Path(path)


def legend(classes) -> str:
    """The class colours of the mask and model panels, one swatch per class."""
    items = "".join(f'<li>{swatch(c)} {escape(str(n))}</li>' for n, c in zip(classes.names, classes.colors))
    return f'<ul id=legend class=legend aria-label="class colours">{items}</ul>'


def _name(names: list, i: int) -> str:
    return names[i] if 0 <= i < len(names) else str(i)


def suggest_page(path, result: dict, shown: list, classes) -> Path:
    """For each suggested image: image | uncertainty (red, uncertain regions boxed) | model."""
    cards = []
    for e, p in zip(result["picked"], shown):
        unc = draw_boxes(heat(p["image"], p["entropy"]), p["boxes"], 1.0)
        panel = viz.side_by_side([p["image"], unc, viz.overlay(p["image"], p["pred"], classes.colors,
                                                                ignore_index=classes.ignore_index)],
                                 ["image", "uncertainty", "model"])
        cards.append(f'<h2>#{e["rank"]} {escape(Path(e["image"]).name)} — score {e["score"]:.4f}</h2>'
                     f'<p class=sub>{escape(e["image"])}</p><img class=panel alt="{escape(e["image"])}" src="{png_uri(panel)}">')
    sub = (f"{len(result['picked'])} of {result['pool_size']} unlabelled images in {result['pool']}, by {result['kind']} "
           f"with diversity (seed {result['seed']})")
    write_text(path, _page("What to label next", sub, legend(classes) + "".join(cards)))
    return Path(path)
