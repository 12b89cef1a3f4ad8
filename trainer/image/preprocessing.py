"""Image bytes -> normalised pixels: the one implementation that training, export validation and the served model
all run, so a served image is classified from exactly the pixels the model was trained and validated on.

Self-contained (numpy and Pillow only): the exporter copies this file beside the Triton preprocessing model, so the
model repository works without tuneship installed (the NGC image).
"""

from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to ~120 MB; more is refused before decoding
TINY_SIDE = 32  # images with a shorter side are upscaled several times: allowed, but worth a warning
FloatArray = npt.NDArray[np.float32]


class ImageError(ValueError):
    """The bytes are not an image this model can take; the message says why."""


@dataclass(frozen=True)
class PreprocessSpec:
    """Resize the shorter side to `resize`, crop the centre `image_size` square, scale to [0, 1], normalise."""

    image_size: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def for_size(cls, image_size: int, mean: Any, std: Any) -> PreprocessSpec:
        # The 256/224 ratio of ImageNet evaluation: the crop keeps the centre 87.5% of the shorter side.
        return cls(image_size, round(image_size * 256 / 224), tuple(mean), tuple(std))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessSpec:
        return cls(int(values["image_size"]), int(values["resize"]), tuple(values["mean"]),
                   tuple(values["std"]))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def decode(data: bytes, max_pixels: int = MAX_PIXELS, least_side: int = 0) -> Any:
    """An RGB PIL image, upright (EXIF orientation applied), or ImageError.

    `least_side` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) while both sides stay at
    least that long: a large photo that will be shrunk anyway decodes several times faster. Training and serving
    both decode through here, so the pixels are the same on both sides."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageError("empty: no image bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"not an image ({len(data)} bytes in no format Pillow reads; supported: "
                         f"{', '.join(FORMATS)})") from None
    except (OSError, ValueError, SyntaxError) as error:  # a known format whose header is cut or broken
        raise ImageError(f"not an image that can be read ({error})") from None
    if image.format not in FORMATS:
        raise ImageError(f"unsupported image format {image.format} (supported: {', '.join(FORMATS)})")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} pixels is over the {max_pixels / 1e6:g}-megapixel limit")
    try:
        if least_side and image.format == "JPEG":
            image.draft("RGB", (least_side, least_side))
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"corrupt {image.format} image ({error})") from None


def resize_and_crop(image: Any, spec: PreprocessSpec) -> Any:
    from PIL import Image

    width, height = image.size
    scale = spec.resize / min(width, height)
    size = (max(spec.image_size, round(width * scale)), max(spec.image_size, round(height * scale)))
    # reducing_gap: shrink by whole factors first (fast box filter), then resample; at 3 the result is
    # indistinguishable from a direct resize and large photos resize several times faster.
    image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (size[0] - spec.image_size) // 2, (size[1] - spec.image_size) // 2
    return image.crop((left, top, left + spec.image_size, top + spec.image_size))


def normalise(image: Any, spec: PreprocessSpec) -> FloatArray:
    """[3, S, S] float32, channels first."""
    # (x / 255 - mean) / std as one multiply-add per channel, on the channels-first view.
    scale = (1.0 / (255.0 * np.asarray(spec.std, dtype=np.float64))).astype(np.float32)[:, None, None]
    offset = (-np.asarray(spec.mean, dtype=np.float64) / np.asarray(spec.std, dtype=np.float64)).astype(
        np.float32)[:, None, None]
    channels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)
    pixels = np.empty(channels.shape, dtype=np.float32)
    np.multiply(channels, scale, out=pixels)
    pixels += offset
    return pixels


def preprocess(data: bytes, spec: PreprocessSpec, max_pixels: int = MAX_PIXELS) -> FloatArray:
    return normalise(resize_and_crop(decode(data, max_pixels, least_side=spec.resize), spec), spec)


def augment(image: Any, spec: PreprocessSpec, rng: random.Random) -> FloatArray:
    """Training-time variation: a random crop of 60-100% of the shorter side, resized to the model's size, and a
    horizontal flip half the time (both keep what the image shows)."""
    from PIL import Image

    width, height = image.size
    side = max(1, round(min(width, height) * rng.uniform(0.6, 1.0)))
    left, top = rng.randint(0, width - side), rng.randint(0, height - side)
    image = image.crop((left, top, left + side, top + side)).resize((spec.image_size, spec.image_size),
                                                                    Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalise(image, spec)
