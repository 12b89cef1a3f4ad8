"""The single-model classifier's ONNX Runtime and tokenizer settings, measured in turns on one server (issue 13).

    .venv/bin/python benchmarks/fused_knobs.py runs/bench/fused-repo --model sentiment --rounds 2 \
        --out runs/bench/fused_knobs.json

Serves copies of one single-model classifier (`tuneship export --layout single`) side by side, each with other settings:
intra-op threads (all cores or 1), instances (1 or 2), `allow_spinning` and `tokenizer_threads`; then, round by
round, measures each with one caller sending sequential requests through plain tritonclient (p50/p99) and with
`tuneship bench`'s load generator at concurrency 4 (texts/s, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# name: (intra-op threads, instances, allow_spinning, tokenizer_threads)
KNOBS = {
    "all-threads": ("0", 1, "1", ""), "all-nospin": ("0", 1, "0", ""), "all-tok1": ("0", 1, "1", "1"),
    "1thread": ("1", 1, "1", ""), "1thread-tok1": ("1", 1, "1", "1"), "2x1thread": ("1", 2, "1", ""),
    "2x1-tok1": ("1", 2, "1", "1"), "all-nospin-tok1": ("0", 1, "0", "1"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path, help="a repository holding the single-model classifier")
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=600, help="sequential requests per one-caller measure")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/fused_knobs.json"))
    args = parser.parse_args()

    from python_backend_floor import measure

    from tuneship.client.bench import builtin_reviews, run_bench
    from tuneship.deploy import ServeOptions, TritonServer
    from tuneship.repository import is_single_model, parse_pbtxt, to_pbtxt

    texts = builtin_reviews()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in KNOBS}
    with tempfile.TemporaryDirectory(prefix="fused-knobs-") as scratch:
        root = Path(scratch)
        for name, (threads, count, spin, tokenizer) in KNOBS.items():
            model = "s_" + name.replace("-", "_")
            shutil.copytree(args.repository / args.model, root / model,
                            ignore=shutil.ignore_patterns("variants", "__pycache__"))
            config = parse_pbtxt((root / model / "config.pbtxt").read_text(encoding="utf-8"))
            if not is_single_model(config):
                raise SystemExit(f"{args.repository / args.model} is not a single-model classifier (--layout single)")
            config.name = model
            config.parameters["intra_op_thread_count"].string_value = threads
            config.parameters["allow_spinning"].string_value = spin
            config.parameters["tokenizer_threads"].string_value = tokenizer
            config.instance_group[0].count = count
            (root / model / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")
        with TritonServer(ServeOptions(model_repository=root, grpc_port=0, http_port=0, metrics_port=0,
                                       heal=False)) as server:
            for round_ in range(args.rounds):
                for name in KNOBS:
                    model = "s_" + name.replace("-", "_")
                    one = measure(server.grpc_url, model, "TEXT", texts, args.requests)
                    [four] = asyncio.run(run_bench(server.grpc_url, model, [4], texts, window_s=2.0, max_windows=2,
                                                   progress=False))
                    row = {"p50_ms": one["p50_ms"], "p99_ms": one["p99_ms"],
                           "c4_texts_per_second": round(four.texts_per_second, 1), "c4_p99_ms": round(four.p99_ms, 1)}
                    rows[name].append(row)
                    print(round_ + 1, name, json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
