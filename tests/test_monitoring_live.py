"""A real Prometheus scrapes the real embedded Triton and a client's metrics under load; every recording
rule and every dashboard panel query must return data."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import require_tool
from prometheus_client import CollectorRegistry
from waiting import wait_for

from tuneship.api import ApiOptions, ApiServer
from tuneship.client import (
    ClientMetrics,
    ClientOptions,
    Generator,
    ModelNotReadyError,
    RetryPolicy,
    ServerUnavailableError,
    TextClassifier,
    TritonClient,
)
from tuneship.deploy import ServeOptions, TritonServer, free_port
from tuneship.monitor import FeedbackStore, PredictionLog
from tuneship.monitor.live import serve as serve_live_quality

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tuneship-triton.json"


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _ready(port: int) -> bool:
    """Prometheus answers 503 until its storage and rules are loaded."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:  # not listening yet, or 503 (HTTPError is an OSError)
        return False


def _fast_rules(source: Path, target: Path) -> Path:
    """The same rules, evaluated every second so a short test sees them."""
    rules = yaml.safe_load(source.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))
    return target


def _panel_queries() -> list[tuple[str, str, bool]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        gpu_only = bool(panel.get("tuneship", {}).get("gpu_only"))
        for target in panel.get("targets", []):  # rows have none
            expr = target["expr"].replace("$model", ".*").replace("$version", ".*")
            queries.append((panel["title"], expr, gpu_only))
    return queries


def test_dashboard_and_rules_return_data_from_a_live_triton(tiny_repository: Path, generator_repository: Path,
                                                            tmp_path: Path) -> None:
    binary = require_tool("prometheus")
    # One server with both tasks: the text classifier and the generator, so every panel has a source.
    repository = tmp_path / "repository"
    shutil.copytree(tiny_repository, repository)
    shutil.copytree(generator_repository / "chat", repository / "chat")
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    client_port = free_port()
    metrics.serve(client_port)
    # Labels for some served answers, so the live-accuracy series (tuneship monitor serve) has data too.
    store = FeedbackStore(str(tmp_path / "feedback.db"))
    quality_port = free_port()
    quality = serve_live_quality(store, quality_port, window_s=3600)
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0,
                                   metrics_port=0)) as server, \
            ApiServer(ApiOptions(url=server.grpc_url, port=0)) as api:
        prometheus_port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(_fast_rules(PROMETHEUS_DIR / "recording_rules.yml", tmp_path / "recording.yml")),
                           str(_fast_rules(PROMETHEUS_DIR / "alert_rules.yml", tmp_path / "alerts.yml"))],
            "scrape_configs": [
                {"job_name": "triton", "static_configs": [{"targets": [f"127.0.0.1:{server.metrics_port}"]}]},
                {"job_name": "tuneship-client", "static_configs": [{"targets": [f"127.0.0.1:{client_port}"]}]},
                {"job_name": "tuneship-api", "static_configs": [{"targets": [f"127.0.0.1:{api.port}"]}]},
                {"job_name": "tuneship-monitor", "static_configs": [{"targets": [f"127.0.0.1:{quality_port}"]}]},
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
        try:
            stop = threading.Event()

            def load() -> None:
                with TritonClient(server.grpc_url, metrics=metrics) as client:
                    classifier = TextClassifier(client, "tiny", batch_size=4, concurrency=2,
                                                log=PredictionLog(store))
                    while not stop.is_set():
                        classifier.classify(["a superb film", "dull and bland", "gripping", "an awful mess"] * 2)
                        # A failure now and then, so the client error panels have something to show.
                        with contextlib.suppress(ModelNotReadyError):
                            client.infer("tiny_missing", {"TEXT": np.array([[b"x"]], dtype=np.object_)},
                                         validate=False)

            # A client of a server that is down: its retries feed the retry panel.
            dead = ClientOptions(timeout_s=5, retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01))
            with TritonClient(f"127.0.0.1:{free_port()}", dead, metrics) as unreachable:
                for _ in range(3):
                    with contextlib.suppress(ServerUnavailableError):
                        unreachable.infer("tiny", {"TEXT": np.array([[b"x"]], dtype=np.object_)}, validate=False)
            def generate() -> None:
                with TritonClient(server.grpc_url, metrics=metrics) as client:
                    generator = Generator(client, "chat")
                    while not stop.is_set():
                        for _ in generator.stream("Is this review positive or negative?", max_tokens=8):
                            pass

            def through_the_api() -> None:
                import openai

                client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="none", max_retries=0)
                while not stop.is_set():
                    for _ in client.chat.completions.create(
                            model="chat", messages=[{"role": "user", "content": "Positive or negative?"}],
                            max_tokens=8, stream=True):
                        pass
                    time.sleep(0.2)

            workers = [threading.Thread(target=load) for _ in range(2)] + [
                threading.Thread(target=generate), threading.Thread(target=through_the_api)]
            for worker in workers:
                worker.start()
            wait_for(lambda: _ready(prometheus_port), "Prometheus ready", timeout_s=60)
            wait_for(lambda: any(row["predictions"] for row in store.counts()), "served answers logged")
            store.import_labels("tiny", ["a superb film", "dull and bland", "gripping", "an awful mess"],
                                ["positive", "negative", "positive", "negative"])
            # Every query is asked again until it has data (rates need a few scrapes first).
            missing = []
            deadline = time.monotonic() + 90
            recording = [rule["record"] for group in yaml.safe_load(
                (PROMETHEUS_DIR / "recording_rules.yml").read_text())["groups"] for rule in group["rules"]]
            pending = [(f"rule {name}", name, False) for name in recording] + _panel_queries()
            while pending and time.monotonic() < deadline:
                missing = []
                for label, expr, gpu_only in pending:
                    result = _query(prometheus_port, expr)  # also proves the query parses
                    if not result and not gpu_only:
                        missing.append((label, expr, gpu_only))
                pending = missing
                if pending:
                    time.sleep(2)
            # The served tiny model against its own reference: a finite, non-negative drift figure.
            drift = _query(prometheus_port, 'model_version:prediction_label_psi:30m{model="tiny"}')
            stop.set()
            for worker in workers:
                worker.join()
            assert not pending, "no data for: " + "; ".join(f"{label}: {expr}" for label, expr, _ in pending)
            assert drift and all(0.0 <= float(sample["value"][1]) < 50 for sample in drift), drift
        finally:
            process.terminate()
            process.wait(timeout=30)
            quality.shutdown()
            store.close()
