"""Label maps as vector polygons: `pixelseg predict --vector geojson|gpkg` writes <stem>.geojson or <stem>.gpkg
beside each label map.

One feature per connected region of a class (class 0, the background, and the ignore index left out), with the
class index, its name and the region's area in pixels. For a georeferenced input (a GeoTIFF with a CRS) the
coordinates are in the raster's CRS (the input's transform applied to pixel edges) and the file names the CRS
(`crs`, the form QGIS and GDAL read; RFC 7946 GeoJSON assumes WGS 84, so a projected CRS must be named); for a
plain image they are pixel edges, x right and y down. rasterio.features.shapes traces the regions exactly along
pixel edges, holes as interior rings: no hand-written tracing (the geo extra, `pip install 'pixelseg[geo]'`).
GeoPackage (one layer named after the image, the same fields, the CRS in the file) is written by GDAL's own driver
through pyogrio, the geometries encoded by shapely: both come with the geo extra.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelseg.fileio import write_json

FORMATS = ("geojson", "gpkg")


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


def _georeference(source):
    from pixelseg.data.geotiff import georeference
    ref = georeference(source) if source is not None else None
    return ref if ref is not None else (None, None)


def write_geojson(path: str | Path, label: np.ndarray, classes, source=None) -> Path:
    """<stem>.geojson of a label map; `source` (the input image) gives the CRS and transform when it has them."""
    crs, transform = _georeference(source)
    doc = {"type": "FeatureCollection", "name": Path(path).stem,
           "features": label_features(label, classes.names, classes.ignore_index, transform)}
    if crs is not None:
        epsg = crs.to_epsg()
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else crs.to_wkt()}}
    else:
        doc["pixelseg"] = {"coordinates": "pixel edges of the input image: x right, y down"}
    write_json(path, doc)
    return Path(path)


def require_gpkg() -> None:
    """pyogrio (GDAL's GPKG driver) and shapely, imported before any work: a missing one names the geo extra."""
    import pyogrio  # noqa: F401
    import shapely  # noqa: F401


def write_gpkg(path: str | Path, label: np.ndarray, classes, source=None) -> Path:
    """<stem>.gpkg of a label map: one polygon layer (named <stem>) with the fields class, name, area_px, in the
    input's CRS when it has one (pixel edges otherwise), written atomically."""
    import shapely
    from pyogrio.raw import write

    from pixelseg.fileio import atomic_path

    path = Path(path)
    crs, transform = _georeference(source)
    feats = label_features(label, classes.names, classes.ignore_index, transform)
    geometry = np.array([shapely.geometry.shape(f["geometry"]).wkb for f in feats], dtype=object)
    fields = ["class", "name", "area_px"]
    data = [np.array([f["properties"]["class"] for f in feats], np.int32),
            np.array([f["properties"]["name"] for f in feats], dtype=object),
            np.array([f["properties"]["area_px"] for f in feats], np.int64)]
    with atomic_path(path) as tmp:
        write(str(tmp), geometry, data, fields, layer=path.stem, driver="GPKG", geometry_type="Polygon",
              crs=crs.to_wkt() if crs is not None else None)
    return path


WRITERS = {"geojson": write_geojson, "gpkg": write_gpkg}


def vectorize_outputs(paths, stems, out_dir: Path, classes, fmt: str = "geojson") -> list[Path]:
    """<stem>.geojson (or .gpkg) for every input (`stems`: their output names) whose label map predict wrote (<stem>.png,
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
        written.append(WRITERS[fmt](out_dir / f"{stem}.{fmt}", label, classes, p))
    return written
