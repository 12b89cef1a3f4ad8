"""What a Triton Python-backend model costs when it does nothing: the floor under any served path on the embedded
server (issue 13).

    .venv/bin/python benchmarks/python_backend_floor.py --out runs/bench/floor

Serves, on the embedded Triton, a Python model that answers a text request with fixed probabilities (no
tokenizer, no model: only the stub's round trip), an ensemble of three such models (the shape of the published
text classifier: tokenizer, model, postprocess) and, for reference, the real published pipeline when
--repository/--model name one. One caller, one text per request, sequential requests over gRPC with
tritonclient (no tuneship client code in the loop); p50/p95/p99 and Triton's queue/compute split per model.
With --fused-repository (the same checkpoint exported with `--layout single` under the same name), that model is
served beside the ensemble as `<model>_fused`, the published models are measured in turns (--passes rounds), and
the in-process figure (the ensemble's tokenizer.json and model.onnx, one text at a time; the goal's baseline) is
measured in the same run.
Writes results.json into --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

NOOP = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            texts = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            out = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (texts.shape[0], 1))
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", out)]))
        return responses
'''


def _config(name: str) -> str:
    return f'''name: "{name}"
backend: "python"
max_batch_size: 64
dynamic_batching {{ max_queue_delay_microseconds: 0 }}
instance_group [{{ count: 1, kind: KIND_CPU }}]
input [{{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }}]
output [{{ name: "PROBABILITIES", data_type: TYPE_FP32, dims: [2] }}]
'''


def _stage(name: str) -> str:
    """A noop that passes its text on: the middle hops of the three-step ensemble."""
    return _config(name).replace('output [{ name: "PROBABILITIES", data_type: TYPE_FP32, dims: [2] }]',
                                 'output [{ name: "PROBABILITIES", data_type: TYPE_FP32, dims: [2] }, '
                                 '{ name: "TEXT_OUT", data_type: TYPE_STRING, dims: [1] }]')


STAGE = NOOP.replace(
    'responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", out)]))',
    'responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PROBABILITIES", out), '
    'pb_utils.Tensor("TEXT_OUT", texts)]))')

ENSEMBLE = '''name: "noop_ensemble"
platform: "ensemble"
max_batch_size: 64
input [{ name: "TEXT", data_type: TYPE_STRING, dims: [1] }]
output [{ name: "PROBABILITIES", data_type: TYPE_FP32, dims: [2] }]
ensemble_scheduling { step [
  { model_name: "noop_a", model_version: -1, input_map { key: "TEXT" value: "TEXT" },
    output_map { key: "TEXT_OUT" value: "t1" } },
  { model_name: "noop_b", model_version: -1, input_map { key: "TEXT" value: "t1" },
    output_map { key: "TEXT_OUT" value: "t2" } },
  { model_name: "noop", model_version: -1, input_map { key: "TEXT" value: "t2" },
    output_map { key: "PROBABILITIES" value: "PROBABILITIES" } }
] }
'''


def build_repository(root: Path) -> None:
    for name, config, code in (("noop", _config("noop"), NOOP), ("noop_a", _stage("noop_a"), STAGE),
                               ("noop_b", _stage("noop_b"), STAGE)):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (root / name / "1" / "model.py").write_text(code, encoding="utf-8")
    (root / "noop_ensemble" / "1").mkdir(parents=True)
    (root / "noop_ensemble" / "config.pbtxt").write_text(ENSEMBLE, encoding="utf-8")


def measure(url: str, model: str, input_name: str, texts: list[str], requests: int) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    latencies = []
    for i in range(requests + 50):
        tensor = grpcclient.InferInput(input_name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[texts[i % len(texts)].encode()]], dtype=np.object_))
        started = time.perf_counter()
        client.infer(model, [tensor])
        if i >= 50:  # the first requests warm the connection and the stubs
            latencies.append((time.perf_counter() - started) * 1000)
    split = {}
    for entry in client.get_inference_statistics("", as_json=True)["model_stats"]:
        stats = entry["inference_stats"]
        count = int(stats["success"].get("count", 0))
        steps = (model, f"{model}_tokenizer", f"{model}_model", f"{model}_postprocess")
        if count and (entry["name"] in steps
                      or (model == "noop_ensemble" and entry["name"] != "noop_ensemble")):
            split[entry["name"]] = {
                "requests": count,
                "queue_ms": round(int(stats["queue"]["ns"]) / count / 1e6, 3),
                "compute_ms": round((int(stats["compute_input"]["ns"]) + int(stats["compute_infer"]["ns"])
                                     + int(stats["compute_output"]["ns"])) / count / 1e6, 3)}
    client.close()
    cuts = statistics.quantiles(latencies, n=100)
    return {"model": model, "requests": requests, "p50_ms": round(statistics.median(latencies), 3),
            "p95_ms": round(cuts[94], 3), "p99_ms": round(cuts[98], 3), "triton": split}


def _copy_renamed(source: Path, root: Path, name: str) -> str:
    """A published model served under another name (its config says the new one), beside the original."""
    from tuneship.repository import parse_pbtxt, to_pbtxt

    shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("variants", "__pycache__"))
    config = parse_pbtxt((root / name / "config.pbtxt").read_text(encoding="utf-8"))
    config.name = name
    (root / name / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/floor"))
    parser.add_argument("--repository", type=Path, help="a published repository to measure beside the floor")
    parser.add_argument("--model", help="the published text classifier in --repository")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--fused-repository", type=Path, help="the same checkpoint published with --layout single")
    parser.add_argument("--passes", type=int, default=1, help="rounds of the published models, in turns")
    args = parser.parse_args()

    from tuneship.client.bench import builtin_reviews
    from tuneship.deploy import ServeOptions, TritonServer

    texts = builtin_reviews()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "repository"
        build_repository(root)
        published = []
        if args.repository and args.model:
            for folder in args.repository.iterdir():
                if folder.name == args.model or folder.name.startswith(f"{args.model}_"):
                    shutil.copytree(folder, root / folder.name, ignore=shutil.ignore_patterns("variants"))
            published.append(args.model)
            if args.fused_repository:
                published.append(_copy_renamed(args.fused_repository / args.model, root, f"{args.model}_fused"))
        with TritonServer(ServeOptions(model_repository=root, grpc_port=0, http_port=0, metrics_port=0,
                                       heal=False)) as server:
            for model in ["noop", "noop_ensemble"]:
                row = measure(server.grpc_url, model, "TEXT", texts, args.requests)
                rows.append(row)
                print(json.dumps(row), flush=True)
            for round_ in range(args.passes):
                for model in published:
                    row = {**measure(server.grpc_url, model, "TEXT", texts, args.requests), "pass": round_ + 1}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        if published:
            from served_vs_inprocess import in_process

            figures = in_process(root, args.model, texts, 8.0)["batch 1"]
            rows.append({"model": "in-process, batch 1", **figures})
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
