"""The shapes of the API's answers and of its request body, as the OpenAPI schema documents them."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from pixelseg.serve.decode import SUPPORTED

IMAGE_FIELD = "image"
IMAGE_SCHEMA = {"type": "string", "format": "binary"}


class ClassInfo(BaseModel):
    index: int = Field(description="the class index: the pixel value in the label PNG")
    name: str
    color: list[int] = Field(min_length=3, max_length=3, description="[r, g, b] in 0..255, as in the label PNG's palette")


class ClassShare(ClassInfo):
    pixels: int = Field(description="pixels labeled with this class")
    fraction: float = Field(ge=0, le=1, description="pixels / (width * height)")


class LabelRLE(BaseModel):
    """Row-major runs: values[i] repeated lengths[i] times; np.repeat(values, lengths).reshape(height, width)."""
    height: int
    width: int
    values: list[int]
    lengths: list[int]


class SegmentResult(BaseModel):
    width: int = Field(description="of the uploaded image (after its EXIF orientation); the label map has this size")
    height: int
    model: str
    classes: list[ClassShare] = Field(description="every class of the model, in index order (absent ones with 0 pixels)")
    label_rle: LabelRLE | None = Field(None, description="the label map, with rle=true")
    inference_ms: float = Field(description="waiting for and running the model (0 when answered from the cache)")
    cached: bool = Field(description="the label map came from the server's cache of recent identical uploads")
    warning: str | None = Field(None, description="present when the image is far from the training images' size "
                                "(objects at another scale than the model learned), with the fix; also the "
                                "X-Pixelseg-Warning header")


class ModelInfo(BaseModel):
    model: str
    encoder: str | None
    backend: str
    device: str
    classes: list[ClassInfo]
    ignore_index: int
    in_channels: int
    preprocessing: dict[str, Any] = Field(description="image_size [h, w] the network sees, mean/std (0..255 scale), "
                                                      "in_channels, resize")
    metrics: dict[str, Any] | None = Field(description="the run's validation metrics (RUN/metrics.json), if present")
    limits: dict[str, float | int]
    batching: dict[str, float | int]
    input_formats: list[str]
    pixelseg_version: str


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    backend: str
    queued: int


# the body is read by hand (two forms, refused early when too big), so the schema spells it out
SEGMENT_REQUEST_BODY = {
    "required": True,
    "description": f"a {SUPPORTED} image: multipart/form-data with the file in field `{IMAGE_FIELD}`, or the raw "
                   "bytes with their image content type (or application/octet-stream)",
    "content": {"multipart/form-data": {"schema": {"type": "object", "required": [IMAGE_FIELD],
                                                   "properties": {IMAGE_FIELD: IMAGE_SCHEMA},
                                                   "additionalProperties": False}},
                **{ct: {"schema": IMAGE_SCHEMA} for ct in ("image/png", "image/jpeg", "image/bmp", "image/tiff",
                                                           "image/webp", "application/octet-stream")}},
}

SEGMENT_OK = {"model": SegmentResult,
              "description": "format=json: the class table with each class's share (and the RLE "
                             "label map with rle=true); format=label: a palette PNG whose pixel "
                             "values are class indices; format=overlay: the image with the classes "
                             "blended over it; format=confidence: 8-bit grayscale, each pixel's top class "
                             "probability x 255 (temperature from `pixelseg calibrate`, in X-Temperature). "
                             "PNGs have the uploaded image's size (overlay with legend=true adds a legend panel).",
              "content": {"image/png": {"schema": IMAGE_SCHEMA}}}
