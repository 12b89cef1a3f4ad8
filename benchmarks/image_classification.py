"""Image classification figures for BENCHMARKS.md: accuracy of frozen features vs full fine-tuning vs LoRA vs raw
pixels + SVM on the same split, training time, and served images/s against PyTorch eager in the same run.

    .venv/bin/python benchmarks/image_classification.py --out runs/bench/images

1. Trains `features`, `full` and `lora` MobileNetV2 checkpoints on the built-in `faces` set (LFW subset, 160 train /
   40 held-out images, seed 42) at 224px, and fits raw-pixel SVMs (linear, C by 3-fold CV; RBF, C by 3-fold CV) on
   the same split, the pixels as stored (25x25 grey).
2. Exports the features checkpoint twice into one repository: fp32 (`faces_fp32`) and static int8 (`faces_int8`,
   published with --force so its figures exist whatever the gate says; the report says what the gate said).
3. Serves both on the embedded Triton and sends, one caller, one image per request (batch 1) and 32 per request
   (batch 32), for a fixed time each, two kinds of image: the held-out faces as stored (25x25 PNG: decoding is
   negligible, the model dominates) and photos (scikit-image's eight sample photos, 300-1411 px, re-encoded as
   JPEG quality 90 as a camera would send them: decoding and resizing take about as long as the int8 model).
   PyTorch eager classifies the same bytes in process, decoding and preprocessing included (the same function
   the served model runs), at batch 1 and 32. A third served figure has 8 callers sending one image per request
   (Triton's dynamic batcher merges them), against the same eager batch-1 figure. Writes results.json and a PNG.

`--reuse` takes the checkpoints already in --out instead of training them again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg",
          "hubble_deep_field.jpg", "horse.png")


def _photos() -> list[bytes]:
    import importlib.util
    import io

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    photos = []
    for name in PHOTOS:
        buffer = io.BytesIO()
        Image.open(folder / name).convert("RGB").save(buffer, format="JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def _faces(checkpoint: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((checkpoint / "eval_images").iterdir())]


def _raw_pixel_svms(seed: int) -> dict[str, float]:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    from tuneship.trainer.image.data import load_images, split
    from tuneship.trainer.image.preprocessing import decode

    train, held = split(load_images("faces"), 0.2, seed)

    def pixels(images: list[bytes]) -> np.ndarray[Any, Any]:
        return np.stack([np.asarray(decode(d).convert("L"), dtype=np.float32).ravel() / 255 for d in images])

    x_train, x_eval = pixels(train.images), pixels(held.images)
    results = {}
    for name, estimator, grid in (("linear", LinearSVC(max_iter=20000, random_state=seed), [0.001, 0.01, 0.1, 1.0]),
                                  ("rbf", SVC(kernel="rbf"), [0.1, 1.0, 10.0, 100.0])):
        search = GridSearchCV(make_pipeline(StandardScaler(), estimator), {f"{estimator.__class__.__name__.lower()}"
                                                                           "__C": grid}, cv=3)
        started = time.monotonic()
        search.fit(x_train, train.labels)
        results[name] = float((search.predict(x_eval) == np.asarray(held.labels)).mean())
        results[f"{name}_seconds"] = round(time.monotonic() - started, 2)
    return results


def _train(out: Path, method: str, epochs: float, reuse: bool) -> dict[str, Any]:
    from tuneship.trainer import ImageTrainConfig, train

    if reuse and (out / method / "metrics.json").is_file():
        metrics = json.loads((out / method / "metrics.json").read_text(encoding="utf-8"))
        return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                "train_seconds": metrics["train_seconds"], "reused": True}
    started = time.monotonic()
    result = train(ImageTrainConfig(method=method, output=str(out / method), overwrite=True, epochs=epochs,
                                    feature_cache=str(out / "feature-cache")))
    return {"accuracy": result.metrics["accuracy"], "macro_f1": result.metrics["macro_f1"],
            "train_seconds": result.train_seconds, "wall_seconds": round(time.monotonic() - started, 1)}


def _torch_eager(checkpoint: Path, photos: list[bytes], seconds: float) -> dict[str, float]:
    import torch

    from tuneship.trainer.image.preprocessing import PreprocessSpec
    from tuneship.trainer.image.training import load_image_classifier, pixel_batch

    model, manifest = load_image_classifier(checkpoint)
    spec = PreprocessSpec.from_dict(manifest["preprocessing"])
    figures = {}
    for batch in (1, 32):
        images = [photos[i % len(photos)] for i in range(batch)]
        with torch.inference_mode():
            model(pixel_batch(images, spec))
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                model(pixel_batch(images, spec))
                done += batch
        figures[str(batch)] = done / (time.perf_counter() - started)
    return figures


def _served(url: str, model: str, photos: list[bytes], seconds: float) -> dict[str, float]:
    """One caller at batch 1 and 32; and 8 callers sending one image each ("1 x8"), which Triton batches."""
    from tuneship.client import ImageClassifier, TritonClient

    figures = {}
    with TritonClient(url) as client:
        for label, batch, callers in (("1", 1, 1), ("32", 32, 1), ("1 x8", 1, 8)):
            classifier = ImageClassifier(client, model, batch_size=batch, concurrency=callers)
            images = [photos[i % len(photos)] for i in range(batch * callers)]
            classifier.classify(images)
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                classifier.classify(images)
                done += len(images)
            figures[label] = done / (time.perf_counter() - started)
    return figures


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(results["images_per_second"])
    fig, axes = plt.subplots(1, len(sets), figsize=(11, 4.5), dpi=100)
    width = 0.27
    for axis, image_set in zip(np.atleast_1d(axes), sets, strict=True):
        by_system = results["images_per_second"][image_set]
        names = list(by_system)
        for offset, batch in ((-width, "1"), (0.0, "32"), (width, "1 x8")):
            values = [by_system[n].get(batch, 0.0) for n in names]
            label = "8 callers, 1 image each" if batch == "1 x8" else f"one caller, batch {batch}"
            bars = axis.bar(np.arange(len(names)) + offset, values, width, label=label)
            axis.bar_label(bars, fmt="%.0f", fontsize=8)
        axis.set_xticks(np.arange(len(names)), names)
        axis.set_ylabel("images/s, decoding included")
        axis.set_title(image_set, fontsize=10)
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle("MobileNetV2 features classifier, 224px: PyTorch eager vs served by Triton")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/images"))
    parser.add_argument("--epochs", type=float, default=5.0, help="full and lora fine-tuning epochs")
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per throughput figure")
    parser.add_argument("--reuse", action="store_true", help="reuse the checkpoints already in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.exporter import ExportOptions, export_checkpoint

    results: dict[str, Any] = {"data": "faces (LFW subset: 160 train / 40 held-out, seed 42)", "training": {}}
    for method in ("features", "full", "lora"):
        results["training"][method] = _train(args.out, method, args.epochs, args.reuse)
    results["training"]["raw_pixels_svm"] = _raw_pixel_svms(42)
    repository = args.out / "repository"
    exports = {}
    for name, precision in (("faces_fp32", "fp32"), ("faces_int8", "int8")):
        report = export_checkpoint(ExportOptions(checkpoint=args.out / "features", name=name, repository=repository,
                                                 precision=precision, force=True))
        exports[name] = {"chosen": report.chosen, "reason": report.reason, "accuracy": report.eval_accuracy,
                         "latency_ms": report.latency_ms}
    results["exports"] = exports
    image_sets = {"held-out faces, 25x25 PNG": _faces(args.out / "features"),
                  "photos, 300-1411 px JPEG": _photos()}
    speeds: dict[str, dict[str, dict[str, float]]] = {}
    for image_set, images in image_sets.items():
        speeds[image_set] = {"PyTorch eager": _torch_eager(args.out / "features", images, args.seconds)}
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        for image_set, images in image_sets.items():
            for name in ("fp32", "int8"):
                speeds[image_set][f"served {name}"] = _served(server.grpc_url, f"faces_{name}", images, args.seconds)
    results["images_per_second"] = {s: {k: {b: round(v, 1) for b, v in by.items()} for k, by in systems.items()}
                                    for s, systems in speeds.items()}
    results["speedup_vs_eager"] = {s: {k: {b: round(v / systems["PyTorch eager"][b.split()[0]], 2)
                                           for b, v in by.items()}
                                       for k, by in systems.items()} for s, systems in speeds.items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _plot(results, args.out / "images_per_second.png")
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out / 'results.json'} and {args.out / 'images_per_second.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
