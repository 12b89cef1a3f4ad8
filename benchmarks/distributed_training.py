"""Training on one process against two (torchrun and accelerate launch) on the main job's MiniLM run: examples/s,
time, accuracy, and that the two-process runs record one set of weights (BENCHMARKS.md, issue 26).

    .venv/bin/python benchmarks/distributed_training.py --out benchmarks/results/distributed_training.json

The same global batch for every run (16 texts a step: one process x 16, or two x 8), so the three runs take the
same optimizer steps over the same data; one process gets both cores (2 threads), each of two processes one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000, help="training texts (the main job's default)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench/distributed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/distributed_training.json"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    common = ["train", "--data", "rotten-tomatoes", "--model", "minilm", "--max-train-samples", str(args.samples),
              "--epochs", "1", "--max-length", "64", "--seed", "42"]
    cores = os.cpu_count() or 2
    runs = {
        "1 process (python -m tuneship)": ([sys.executable, "-m", "tuneship"], 16, {"OMP_NUM_THREADS": str(cores)}),
        "2 processes (torchrun)": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", "2", "-m", "tuneship"], 8,
                                   {"OMP_NUM_THREADS": str(max(1, cores // 2))}),
        "2 processes (accelerate launch)": ([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                                             "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
                                             "no", "--dynamo_backend", "no", "-m", "tuneship"], 8,
                                            {"OMP_NUM_THREADS": str(max(1, cores // 2))}),
    }
    results: dict[str, Any] = {"samples": args.samples, "cores": cores, "runs": {}}
    for index, (label, (launcher, batch, env)) in enumerate(runs.items()):
        output = args.work / f"run{index}"
        command = [*launcher, *common, "--batch-size", str(batch), "--output", str(output)]
        print(f"== {label}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        subprocess.run(command, check=True, env={**os.environ, **env, "HF_HOME": str(args.work / "hf-home")},
                       stdout=subprocess.DEVNULL)
        wall = time.monotonic() - started
        metrics = json.loads((output / "metrics.json").read_text())
        manifest = json.loads((output / "tuneship.json").read_text())
        results["runs"][label] = {
            "batch_per_process": batch, "steps": metrics["steps"], "wall_seconds": round(wall, 1),
            "train_seconds": metrics["train_seconds"], "examples_per_second": metrics["train_examples_per_second"],
            "accuracy": metrics["accuracy"], "distributed": manifest.get("distributed")}
        print(json.dumps(results["runs"][label]), flush=True)
        time.sleep(5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
