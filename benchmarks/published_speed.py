"""The published ONNX graph against PyTorch eager, measured the way it is served (BENCHMARKS.md).

    .venv/bin/python benchmarks/published_speed.py runs/sentiment model_repository/sentiment_model \\
        --out runs/bench/published_speed.json

Reads the newest version of a published `<name>_model` (its `model.onnx` and the graph level its config asks
for), builds the session as Triton's ONNX Runtime backend would, and times it against the checkpoint's PyTorch
eager model on the checkpoint's own held-out reviews at batch 32, in turns (onnx_timing.interleaved_medians):

- `longest`: each batch padded to its longest review, as the served tokenizer pads a batch (the realistic case);
- `128`: each batch padded to 128 tokens (the export benchmark's shape: about three tokens in four are padding);
- `full`: texts long enough to fill all 128 positions (no padding at all).

The same batches go to both sides, so only the model differs. Used to bisect the exporter's history: export
one checkpoint with each commit, then measure each published graph with this script.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from onnx_timing import benchmark_arguments, interleaved_medians


def published_graph(model_dir: Path) -> tuple[Path, int]:
    """(model.onnx of the newest version, the ONNX Runtime graph level its config asks for)."""
    from tuneship.repository import parse_pbtxt

    config = parse_pbtxt((model_dir / "config.pbtxt").read_text(encoding="utf-8"))
    version = max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return version / "model.onnx", int(config.optimization.graph.level)


def batches(tokenizer: Any, texts: list[str], names: list[str], kind: str, count: int) -> list[dict[str, Any]]:
    import numpy as np

    out = []
    for index in range(count):
        chunk = [texts[(index * 32 + i) % len(texts)] for i in range(32)]
        if kind == "full":
            chunk = [" ".join([text] * 12) for text in chunk]
        padding: dict[str, Any] = {"padding": True} if kind == "longest" else {"padding": "max_length"}
        encoded = tokenizer(chunk, truncation=True, max_length=128, return_tensors="np", **padding)
        out.append({n: encoded[n].astype(np.int64) for n in names if n in encoded})
    return out


def main() -> int:
    def extra(parser: Any) -> None:
        parser.add_argument("model_dir", type=Path, help="a published <name>_model folder")
        parser.add_argument("--rounds", type=int, default=7)
        parser.add_argument("--batches", type=int, default=8, help="different batches per call")

    args = benchmark_arguments(extra)

    import onnxruntime as ort
    import torch

    from tuneship.exporter.text.texts import read_jsonl
    from tuneship.exporter.variants import session_options
    from tuneship.trainer import load_classifier

    torch.set_num_threads(args.threads)
    path, level = published_graph(args.model_dir)
    # Triton's backend maps config levels as the exporter's session_options does (tests/test_bridge.py).
    session = ort.InferenceSession(str(path), session_options(level, args.threads), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    model, tokenizer, info = load_classifier(args.checkpoint)
    texts, _ = read_jsonl(info.eval_data, args.eval_samples)
    results: dict[str, Any] = {"graph": str(path), "graph_level": level, "threads": args.threads, "batch": 32}
    with torch.inference_mode():
        for kind in ("longest", "128", "full"):
            feeds = batches(tokenizer, texts, names, kind, args.batches)
            tensors = [{k: torch.from_numpy(v) for k, v in feed.items()} for feed in feeds]
            tokens = sum(int(feed["attention_mask"].sum()) for feed in feeds)
            positions = sum(int(feed["attention_mask"].size) for feed in feeds)

            def eager(tensors: list[dict[str, Any]] = tensors) -> None:
                for batch in tensors:
                    model(**batch)

            def onnx(feeds: list[dict[str, Any]] = feeds) -> None:
                for feed in feeds:
                    session.run(None, feed)

            calls: dict[str, Callable[[], Any]] = {"pytorch eager": eager, "published onnx": onnx}
            medians = interleaved_medians(calls, args.rounds)
            results[kind] = {"pytorch_ms": 1000 * medians["pytorch eager"] / len(feeds),
                             "onnx_ms": 1000 * medians["published onnx"] / len(feeds),
                             "speedup": medians["pytorch eager"] / medians["published onnx"],
                             "real_token_share": tokens / positions}
            row = results[kind]
            print(f"{kind:>8}: pytorch {row['pytorch_ms']:7.1f} ms  onnx {row['onnx_ms']:7.1f} ms  "
                  f"{row['speedup']:.2f}x  (real tokens {100 * row['real_token_share']:.0f}%)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
