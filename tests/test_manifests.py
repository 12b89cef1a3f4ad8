"""Production assets validated offline: Kubernetes manifests against the API schemas, compose structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_schemas import KUBERNETES_VERSIONS, validate

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kustomization() -> dict[str, Any]:
    return _documents(KUBERNETES / "kustomization.yaml")[0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", _kustomization()["resources"])
def test_manifest_is_valid(name: str, version: str) -> None:
    path = KUBERNETES / name
    assert path.is_file(), f"kustomization lists {name}, which does not exist"
    for document in _documents(path):
        validate(document, version)


def test_every_manifest_is_in_the_kustomization() -> None:
    listed = set(_kustomization()["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed
    images = {i["name"] for i in _kustomization()["images"]}
    used = {c["image"].split(":")[0] for c in _pod(_documents(KUBERNETES / "deployment.yaml")[0])["containers"]}
    assert used <= images, "the kustomization sets every image the Deployment uses"


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_deployment_probes_gpu_and_ports_fit_together() -> None:
    deployment = _documents(KUBERNETES / "deployment.yaml")[0]
    container = _pod(deployment)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    api = _pod(deployment)["containers"][1]
    assert api["name"] == "openai" and "--url" in api["args"] and api["args"][api["args"].index("--url") + 1] == \
        "127.0.0.1:8001"  # the sidecar relays to its own pod's Triton
    assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": "openai"}
    ports.update({p["name"]: p["containerPort"] for p in api["ports"]})
    service = _documents(KUBERNETES / "service.yaml")[0]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    monitor = _documents(KUBERNETES / "servicemonitor.yaml")[0]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "openai"}
    hpa = _documents(KUBERNETES / "hpa.yaml")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    adapter = yaml.safe_load(_documents(KUBERNETES / "prometheus-adapter-rules.yaml")[0]["data"]["config.yaml"])
    served = {rule["name"]["as"] for rule in adapter["rules"]}
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] in served
    claim = _documents(KUBERNETES / "pvc.yaml")[0]["metadata"]["name"]
    assert {"name": "model-repository", "persistentVolumeClaim": {"claimName": claim}} in _pod(deployment)["volumes"]


def test_compose_wires_triton_prometheus_and_grafana() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"triton", "openai", "prometheus", "grafana"}
    assert services["openai"]["entrypoint"] == ["tuneship", "api"] and "9000:9000" in services["openai"]["ports"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (COMPOSE.parent / source).resolve().is_relative_to(ROOT), volume
            if not source.endswith("model_repository"):
                assert (COMPOSE.parent / source).exists(), volume
    dockerfile = (COMPOSE.parent / "Dockerfile").read_text()
    assert "tritonserver:24.10-py3" in dockerfile  # Triton 2.51.0, as the embedded server
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    assert "triton:8002" in targets and "openai:9000" in targets


def test_liveness_checks_run_a_real_inference() -> None:
    deployment = _documents(KUBERNETES / "deployment.yaml")[0]
    container = _pod(deployment)["containers"][0]
    command = " ".join(container["livenessProbe"]["exec"]["command"])
    assert "tuneship health" in command and "--model" in command
    assert any(e["name"] == "HEALTH_MODEL" for e in container["env"])
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["services"]["triton"]["healthcheck"]["test"][1:3] == ["tuneship", "health"]
    dockerfile = (ROOT / "deploy" / "compose" / "Dockerfile").read_text()
    assert "[client,api]" in dockerfile  # the image carries the client that `tuneship health` needs, and the API
