"""What callers hand the image classifier, as the encoded bytes the served model decodes.

Paths are read, bytes are sent as they are, and arrays are encoded as PNG here (lossless, standard library only:
the client does not depend on Pillow), so the server decodes exactly the pixels the caller had.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any

import numpy as np

from tuneship.client.errors import InvalidInputError
from tuneship.media import IMAGE_SUFFIXES

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray[Any, Any]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray[Any, Any]) -> bytes:
    """PNG of an 8-bit image: [H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA (uint8, or floats in [0, 1])."""
    array = np.asarray(pixels)
    if array.dtype.kind == "f":
        if array.size and (np.nanmin(array) < 0.0 or np.nanmax(array) > 1.0):
            raise InvalidInputError("a float image must hold values in [0, 1]; pass uint8 for 0-255")
        array = np.round(np.nan_to_num(array) * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise InvalidInputError(f"an image array must be uint8 (0-255) or float in [0, 1], not {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    colour = {2: 0, 3: {3: 2, 4: 6}.get(array.shape[-1], -1) if array.ndim == 3 else -1}.get(array.ndim, -1)
    if colour < 0 or array.shape[0] < 1 or array.shape[1] < 1:
        raise InvalidInputError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4], not {list(array.shape)}")
    height, width = array.shape[:2]
    rows = np.ascontiguousarray(array).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6))
            + _chunk(b"IEND", b""))


def image_bytes(item: Any, position: int) -> bytes:
    """The bytes to send for one image; InvalidInputError naming its position when it cannot be one."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    elif isinstance(item, np.ndarray):
        data = encode_png(item)
    elif isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as handle:
                data = handle.read()
        except OSError as error:
            raise InvalidInputError(f"image {position}: cannot read {os.fspath(item)!r} "
                                    f"({error.strerror or error})") from None
    else:
        raise InvalidInputError(f"image {position}: expected a path, bytes or a numpy array, not "
                                f"{type(item).__name__}")
    if not data:
        raise InvalidInputError(f"image {position} is empty: nothing to classify")
    return data


def read_image_folder(folder: str | os.PathLike[str]) -> list[bytes]:
    """Every image file under `folder` (by suffix, sorted), as bytes: load for `tuneship bench` and `tune`."""
    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise InvalidInputError(f"{root}: not a folder of images")
    found = []
    for directory, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                with open(os.path.join(directory, name), "rb") as handle:
                    found.append(handle.read())
    if not found:
        raise InvalidInputError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return found


# A 32x32 mid-grey PNG: what liveness probes send to a model that takes images.
PROBE_PNG = encode_png(np.full((32, 32), 128, dtype=np.uint8))
