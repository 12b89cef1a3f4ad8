"""Labelled images from a folder of class subfolders, a CSV/JSONL/Parquet table of path + label, or a built-in set.

Every file is opened and decoded before anything is trained or written: a corrupt, unreadable or unsupported file
fails the run with its path and the reason; tiny images and imbalanced classes are warned about.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from tuneship.media import IMAGE_SUFFIXES
from tuneship.trainer.errors import DataError
from tuneship.trainer.image.preprocessing import FORMATS, TINY_SIDE, ImageError, decode
from tuneship.trainer.tables import MISSING_LABELS, read_rows, stratify

BUILTIN_IMAGE_SETS = {
    "faces": "Labeled Faces in the Wild subset from scikit-image: 100 faces and 100 non-face patches from the same "
             "photos, 25x25 grey",
    "digits": "scikit-learn's handwritten digits (UCI): 1,797 images of 0-9, 8x8 grey",
}
_SHOWN_PROBLEMS = 10


@dataclass
class ImageExample:
    """One labelled image: a checked file, read again when needed (a folder of photos may not fit in memory), or
    the encoded bytes themselves (the small built-in sets). Either way, exactly what a caller would send."""

    label: str
    source: str  # path (or table:line), for messages
    digest: str  # SHA-256 of the encoded bytes: duplicates, caches and fingerprints without reading them again
    path: Path | None = None
    content: bytes | None = None

    def read(self) -> bytes:
        if self.content is not None:
            return self.content
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise DataError(f"{self.source}: cannot read ({error.strerror or error}); it was readable when the "
                            "data was checked") from None


class ImageFiles(Sequence[bytes]):
    """The encoded images of some examples, read one at a time as they are used."""

    def __init__(self, examples: list[ImageExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [example.read() for example in self.examples[index]]
        return self.examples[index].read()


@dataclass
class ImageData:
    name: str
    examples: list[ImageExample]
    duplicates_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def images(self) -> ImageFiles:
        return ImageFiles(self.examples)

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.examples]

    def label_counts(self) -> Counter[str]:
        return Counter(self.labels)

    def head(self, limit: int | None, seed: int) -> ImageData:
        if limit is None or limit >= len(self.examples):
            return self
        _, kept = split(self, limit / len(self.examples), seed)
        return ImageData(self.name, kept.examples[:limit], self.duplicates_dropped, list(self.notes))


def split(data: ImageData, eval_fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Seeded split that keeps each label's share in both parts."""
    train, held = stratify(data.examples, eval_fraction, seed)
    return (ImageData(f"{data.name} (train split)", train, data.duplicates_dropped, data.notes),
            ImageData(f"{data.name} (eval split)", held))


def imbalance_report(data: ImageData) -> str:
    counts = data.label_counts()
    total = sum(counts.values())
    parts = [f"{label} {n} ({100 * n / total:.1f}%)" for label, n in sorted(counts.items())]
    ratio = max(counts.values()) / max(1, min(counts.values()))
    warning = "  (imbalanced: consider macro-F1 over accuracy)" if ratio > 3 else ""
    return f"{data.name}: {total} images: " + ", ".join(parts) + warning


def load_images(source: str, image_column: str = "image", label_column: str = "label") -> ImageData:
    """A built-in set's name, a folder of class subfolders, or a table of image paths (relative to the table)."""
    if source in BUILTIN_IMAGE_SETS:
        return _builtin(source)
    path = Path(source)
    if path.is_dir():
        pairs = _from_folder(path)
    elif path.is_file():
        pairs = _from_table(path, image_column, label_column)
    else:
        raise DataError(f"{source}: no such file or folder, and not a built-in image set "
                        f"({', '.join(BUILTIN_IMAGE_SETS)})")
    return _read_and_check(str(path), pairs)


def _from_folder(root: Path) -> list[tuple[Path, str, str]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class subfolders (expected {root}/<label>/<image files>)")
    pairs: list[tuple[Path, str, str]] = []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        for file in files:
            pairs.append((file, folder.name, str(file)))
        if not files:
            raise DataError(f"{folder}: class folder {folder.name!r} holds no files")
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray:
        warnings.warn(f"{root}: {len(stray)} images directly in the data folder are ignored (they have no class "
                      f"folder): {', '.join(stray[:5])}", stacklevel=3)
    return pairs


def _from_table(path: Path, image_column: str, label_column: str) -> list[tuple[Path, str, str]]:
    pairs: list[tuple[Path, str, str]] = []
    for line, record in read_rows(path):
        if image_column not in record or label_column not in record:
            raise DataError(f"{path}:{line}: needs columns {image_column!r} and {label_column!r} "
                            f"(found: {', '.join(sorted(record)) or 'none'}); choose with --image-column / "
                            "--label-column")
        image = (record.get(image_column) or "").strip()
        label = (record.get(label_column) or "").strip()
        if not image:
            raise DataError(f"{path}:{line}: field {image_column!r} is empty")
        if not label or label.lower() in MISSING_LABELS:
            raise DataError(f"{path}:{line}: field {label_column!r} is {label!r}: every image needs a label")
        file = Path(image)
        pairs.append((file if file.is_absolute() else path.parent / file, label, f"{path}:{line} ({image})"))
    if not pairs:
        raise DataError(f"{path}: no data rows")
    return pairs


def _read_and_check(name: str, pairs: list[tuple[Path, str, str]]) -> ImageData:
    problems: list[str] = []
    tiny: list[str] = []
    examples: list[ImageExample] = []
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for file, label, source in pairs:
        try:
            data = file.read_bytes()
        except OSError as error:
            problems.append(f"{source}: cannot read ({error.strerror or error})")
            continue
        try:
            image = decode(data)
        except ImageError as error:
            problems.append(f"{source}: {error}")
            continue
        if min(image.size) < TINY_SIDE:
            tiny.append(f"{source} ({image.size[0]}x{image.size[1]})")
        key = (hashlib.sha256(data).hexdigest(), label)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        examples.append(ImageExample(label, source, key[0], path=file))
    if problems:
        shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - _SHOWN_PROBLEMS} more" if len(problems) > _SHOWN_PROBLEMS else ""
        raise DataError(f"{name}: {len(problems)} of {len(pairs)} images cannot be used (supported formats: "
                        f"{', '.join(FORMATS)}); fix or remove them:\n  {shown}{more}")
    result = ImageData(name, examples, duplicates)
    if tiny:
        result.notes.append(f"{name}: {len(tiny)} images have a side under {TINY_SIDE} pixels and will be upscaled a "
                          f"lot (features from them are weaker), e.g. {', '.join(tiny[:3])}")
    if duplicates:
        result.notes.append(f"{name}: {duplicates} duplicated images (same file and label) dropped")
    for note in result.notes:
        warnings.warn(note, stacklevel=3)
    return result


def _png(pixels: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _in_memory(data: bytes, label: str, source: str) -> ImageExample:
    return ImageExample(label, source, hashlib.sha256(data).hexdigest(), content=data)


def _builtin(name: str) -> ImageData:
    import numpy as np

    if name == "faces":
        spec = importlib.util.find_spec("skimage")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("built-in image set 'faces' needs scikit-image's data files: "
                            "pip install --no-deps scikit-image==0.26.0")
        # Read the array file directly: importing skimage pulls in its whole dependency tree.
        grey = np.load(Path(next(iter(spec.submodule_search_locations))) / "data" / "lfw_subset.npy")  # in [0, 1]
        array = (grey * 255.0).round().astype(np.uint8)
        labels = ["face"] * 100 + ["not-face"] * 100
        examples = [_in_memory(_png(array[i]), labels[i], f"faces:{i}") for i in range(len(array))]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
        examples = [_in_memory(_png(pixels[i]), str(int(digits.target[i])), f"digits:{i}")
                    for i in range(len(pixels))]
    return ImageData(name, examples, notes=[f"{name}: {BUILTIN_IMAGE_SETS[name]}"])
