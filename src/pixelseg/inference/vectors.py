"""Label maps as vector polygons: `pixelseg predict --vector geojson` writes <stem>.geojson beside each label map.

One feature per connected region of a class (class 0, the background, and the ignore index left out), with the
class index, its name and the region's area in pixels. For a georeferenced input (a GeoTIFF with a CRS) the
coordinates are in the raster's CRS (the input's transform applied to pixel edges) and the file names the CRS
(`crs`, the form QGIS and GDAL read; RFC 7946 GeoJSON assumes WGS 84, so a projected CRS must be named); for a
plain image they are pixel edges, x right and y down. rasterio.features.shapes traces the regions exactly along
pixel edges, holes as interior rings: no hand-written tracing (the geo extra, `pip install 'pixelseg[geo]'`).
GeoPackage needs GDAL's vector drivers (pyogrio / fiona), which pixelseg does not install: convert with
`ogr2ogr out.gpkg <stem>.geojson`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelseg.fileio import write_json

FORMATS = ("geojson",)


def label_features(label: np.ndarray, names, ignore_index: int = 255, transform=None) -> list[dict]:
    """GeoJSON features of `label` (H x W class indices): one polygon per 4-connected region of each class
    other than 0 and the ignore index, in pixel-edge coordinates or through `transform` (an affine)."""
    from affine import Affine
    from rasterio import features

    label = np.asarray(label)
    dtype = np.uint8 if label.max(initial=0) < 256 else np.uint16
    keep = (label != 0) & (label != ignore_index)
    out = []
    px = abs(transform.a * transform.e - transform.b * transform.d) if transform is not None else 1.0
    for geom, value in features.shapes(label.astype(dtype), mask=keep, connectivity=4,
                                       transform=transform or Affine.identity()):
        c = int(value)
        rings = [abs(_shoelace(np.asarray(r))) for r in geom["coordinates"]]
        area = (rings[0] - sum(rings[1:])) / px          # in pixels, whatever the CRS's units
        out.append({"type": "Feature", "geometry": geom,
                    "properties": {"class": c, "name": str(names[c]) if c < len(names) else str(c),
                                   "area_px": int(round(area))}})
    return out


def _shoelace(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def write_geojson(path: str | Path, label: np.ndarray, classes, source=None) -> Path:
    """<stem>.geojson of a label map; `source` (the input image) gives the CRS and transform when it has them."""
    from pixelseg.data.geotiff import georeference
    ref = georeference(source) if source is not None else None
    crs, transform = ref if ref is not None else (None, None)
    doc = {"type": "FeatureCollection", "name": Path(path).stem,
           "features": label_features(label, classes.names, classes.ignore_index, transform)}
    if crs is not None:
        epsg = crs.to_epsg()
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()}}
    else:
        doc["pixelseg"] = {"coordinates": "pixel edges of the input image: x right, y down"}
    write_json(path, doc)
    return Path(path)


def vectorize_outputs(paths, stems, out_dir: Path, classes) -> list[Path]:
    """<stem>.geojson for every input (`stems`: their output names) whose label map predict wrote (<stem>.png,
    or <stem>.tif for a raster predicted block by block), read back from that file."""
    from PIL import Image

    written = []
    for p, stem in zip(paths, stems):
        png, tif = out_dir / f"{stem}.png", out_dir / f"{stem}.tif"
        if png.is_file():
            with Image.open(png) as im:
                label = np.asarray(im)
        else:
            import rasterio
            with rasterio.open(tif) as src:
                label = src.read(1)
        written.append(write_geojson(out_dir / f"{stem}.geojson", label, classes, p))
    return written
