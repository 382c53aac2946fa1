"""GeoTIFFs for tests: one writer for the georeferenced rasters the GeoTIFF, doctor and hostile-corpus tests make."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_geotiff(path: Path, a: np.ndarray, nodata=None, alpha: bool = False, **profile) -> Path:
    """A GeoTIFF (UTM 33N, 1 m pixels) of bands x H x W `a` (a 2-D array is one band); `alpha`: its last band
    declared alpha (of four); `profile`: more creation options (tiled, compress, ...)."""
    import rasterio
    from rasterio.enums import ColorInterp
    from rasterio.transform import from_origin
    a = a if a.ndim == 3 else a[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=a.shape[1], width=a.shape[2], count=a.shape[0],
                       dtype=a.dtype.name, crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1),
                       nodata=nodata, **profile) as dst:
        dst.write(a)
        if alpha:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path
