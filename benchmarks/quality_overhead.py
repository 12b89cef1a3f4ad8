"""Cost of the model-quality metrics on served throughput (BENCHMARKS.md): the same pipeline with them on and off.

    .venv/bin/python benchmarks/quality_overhead.py model_repository --model sentiment \
        --out runs/bench/quality_overhead.json

Copies the pipeline's four models twice into scratch repositories, one with `quality_metrics` "false" in the
tokenizer's and postprocess's configs, and measures each with the project's load generator (`tuneship bench`'s)
in turns, a fresh embedded server per turn, five rounds (medians): texts/s at concurrency 1 and 8, one text per request,
and Triton's compute time per execution of the tokenizer and postprocess models (where the metrics are counted;
far less noisy on a shared 2-core machine than throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = (1, 8)


def _copy(repository: Path, model: str, target: Path, quality: bool) -> Path:
    from tuneship.repository import parse_pbtxt, to_pbtxt

    for name in (model, f"{model}_tokenizer", f"{model}_model", f"{model}_postprocess"):
        shutil.copytree(repository / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (f"{model}_tokenizer", f"{model}_postprocess"):
        path = target / name / "config.pbtxt"
        config = parse_pbtxt(path.read_text())
        config.parameters["quality_metrics"].string_value = "true" if quality else "false"
        path.write_text(to_pbtxt(config))
    return target


def _compute_us(client: Any, models: list[str]) -> dict[str, float]:
    """Triton's compute time per execution of each model (microseconds): where the metric updates happen."""
    figures = {}
    for entry in client.get_inference_statistics().get("model_stats", []):
        if entry["name"] in models:
            executions = int(entry.get("execution_count", 0)) or 1
            figures[entry["name"]] = int(entry["inference_stats"]["compute_infer"]["ns"]) / executions / 1000
    return figures


def _measure(repository: Path, model: str, texts: list[str]) -> dict[str, Any]:
    from tuneship.client import TritonClient
    from tuneship.client.bench import run_bench
    from tuneship.deploy import ServeOptions, TritonServer

    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        results = asyncio.run(run_bench(server.grpc_url, model, LEVELS, texts, progress=False))
        with TritonClient(server.grpc_url) as client:
            compute = _compute_us(client, [f"{model}_tokenizer", f"{model}_postprocess"])
    figures: dict[str, Any] = {str(r.concurrency): r.texts_per_second for r in results}
    figures["compute_us"] = compute
    return figures


class _FakeBackend:
    """Enough of triton_python_backend_utils to run the Python models' execute() in this process, counting the
    metric updates (each is a call into the server when served)."""

    class TritonError(Exception):
        INVALID_ARG = 3

        def __init__(self, message: str, code: int = 0) -> None:
            super().__init__(message)

    class MetricFamily:
        COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
        updates = 0

        def __init__(self, name: str, description: str, kind: int) -> None:
            pass

        def Metric(self, labels: dict[str, str], buckets: Any = None) -> Any:
            family = _FakeBackend.MetricFamily

            class Metric:
                def increment(self, value: float) -> None:
                    family.updates += 1

                set = observe = increment

            return Metric()

    class Tensor:
        def __init__(self, name: str, array: Any) -> None:
            self.name, self.array = name, array

        def as_numpy(self) -> Any:
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors: Any = None, error: Any = None) -> None:
            self.outputs, self.error = output_tensors, error

    @staticmethod
    def get_input_tensor_by_name(request: Any, name: str) -> Any:
        return request[name]


def _load_model(path: Path, directory: Path, config: dict[str, Any]) -> Any:
    import importlib.util

    sys.modules["triton_python_backend_utils"] = _FakeBackend  # type: ignore[assignment]
    spec = importlib.util.spec_from_file_location(f"stub_{path.stem}_{id(config)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(directory.parent),
                      "model_version": directory.name, "model_name": directory.parent.name})
    return model


def component_cost(repository: Path, model: str, texts: list[str], executes: int = 3000) -> dict[str, Any]:
    """Microseconds per execute() of the tokenizer and postprocess models with the quality metrics on and off,
    measured in this process in turns (the noise of a shared machine hits both alike), and metric updates sent."""
    import time as clock

    import numpy as np

    from tuneship.repository import existing_versions, parse_pbtxt

    figures: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for part in ("tokenizer", "postprocess"):
        folder = repository / f"{model}_{part}"
        version = folder / str(existing_versions(folder)[-1])
        from google.protobuf import json_format

        base = json_format.MessageToDict(parse_pbtxt((folder / "config.pbtxt").read_text()),
                                         preserving_proto_field_name=True)
        models = {}
        for state in ("on", "off"):
            config = json.loads(json.dumps(base))
            config.setdefault("parameters", {})["quality_metrics"] = {"string_value": "true" if state == "on"
                                                                      else "false"}
            models[state] = _load_model(version / "model.py", version, config)
        times: dict[str, list[float]] = {"on": [], "off": []}
        updates = {"on": 0, "off": 0}
        for batch in range(executes):
            if part == "tokenizer":
                chosen = [texts[(batch + i) % len(texts)].encode() for i in range(1 + batch % 8)]
                requests = [{"TEXT": _FakeBackend.Tensor("TEXT", np.array([[t]], dtype=np.object_))} for t in chosen]
            else:
                logits = rng.normal(size=(1 + batch % 8, 2)).astype(np.float32)
                requests = [{"logits": _FakeBackend.Tensor("logits", logits[i:i + 1])} for i in range(len(logits))]
            for state in ("on", "off") if batch % 2 else ("off", "on"):
                before = _FakeBackend.MetricFamily.updates
                started = clock.perf_counter()
                models[state].execute(requests)
                times[state].append(clock.perf_counter() - started)
                updates[state] += _FakeBackend.MetricFamily.updates - before
        on, off = statistics.median(times["on"]) * 1e6, statistics.median(times["off"]) * 1e6
        figures[part] = {"us_per_execute_on": round(on, 1), "us_per_execute_off": round(off, 1),
                         "extra_us": round(on - off, 1), "metric_updates_on": updates["on"],
                         "executes": executes}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/quality_overhead.json"))
    parser.add_argument("--rounds", type=int, default=5, help="turns of on and off (medians are reported)")
    parser.add_argument("--component-only", action="store_true", help="only the in-process execute() cost")
    args = parser.parse_args()

    from tuneship.client.bench import builtin_reviews

    texts = builtin_reviews()
    component = component_cost(args.repository, args.model, texts)
    print("in-process execute() cost: " + json.dumps(component), flush=True)
    if args.component_only:
        return
    runs: dict[str, dict[str, list[float]]] = {"on": {}, "off": {}}
    with tempfile.TemporaryDirectory() as scratch:
        repositories = {state: _copy(args.repository, args.model, Path(scratch) / state, state == "on")
                        for state in ("on", "off")}
        for round_ in range(args.rounds):
            for state in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                figures = _measure(repositories[state], args.model, texts)
                compute = figures.pop("compute_us")
                print(f"round {round_ + 1} quality metrics {state}: "
                      + ", ".join(f"c{level} {rate:.1f} texts/s" for level, rate in figures.items())
                      + "; compute per execution " + ", ".join(f"{m} {us:.0f} us" for m, us in compute.items()),
                      flush=True)
                for level, rate in figures.items():
                    runs[state].setdefault(level, []).append(rate)
                for name, us in compute.items():
                    runs[state].setdefault(f"{name} compute us", []).append(us)
    result: dict[str, Any] = {"levels": {}, "rounds": runs, "component": component}
    for level in runs["on"]:
        on, off = statistics.median(runs["on"][level]), statistics.median(runs["off"][level])
        if level.endswith("compute us"):  # more time is the overhead
            result["levels"][level] = {"on": round(on, 1), "off": round(off, 1),
                                       "overhead_percent": round(100 * (on - off) / off, 1)}
        else:
            result["levels"][level] = {"texts_per_second_on": round(on, 1), "texts_per_second_off": round(off, 1),
                                       "overhead_percent": round(100 * (off - on) / off, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"levels": result["levels"], "component": component}, indent=2))


if __name__ == "__main__":
    main()
