"""Strict validation of Kubernetes manifests offline: core kinds against kubernetes-validate's schemas, custom
resources (ServiceMonitor, KEDA's ScaledObject, KServe's InferenceService) against their CRDs' own OpenAPI schemas,
pinned in tests/schemas/ (extracted from each project's CRD at the commit named inside the file)."""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")


def _strict(schema: Any) -> Any:
    """The CRD's structural schema as JSON Schema, refusing unknown fields where the CRD lists its fields (as the
    API server prunes or, with strict field validation, refuses them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@cache
def _custom_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.rpartition("/")
    path = SCHEMAS / f"{group}_{kind.lower()}_{version}.json.gz"
    if not path.is_file():
        return None
    pinned = json.loads(gzip.decompress(path.read_bytes()))
    schema = _strict(copy.deepcopy(pinned["openAPIV3Schema"]))
    schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
    return schema  # type: ignore[no-any-return]


def validate(document: dict[str, Any], kubernetes_version: str) -> None:
    """Raise AssertionError naming the manifest, the field path and the problem."""
    import jsonschema
    import kubernetes_validate

    where = f"{document.get('kind')} {document.get('metadata', {}).get('name')}"
    schema = _custom_schema(str(document.get("apiVersion")), str(document.get("kind")))
    if schema is not None:
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
        assert not errors, f"{where}: " + "; ".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}"
                                                    for e in errors[:5])
        return
    group = str(document.get("apiVersion")).rpartition("/")[0]
    assert "." not in group or group.endswith(".k8s.io"), f"{where}: no pinned schema for {document['apiVersion']}"
    try:
        kubernetes_validate.validate(document, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(map(str, getattr(error, "path", []))) or "<root>"
        raise AssertionError(f"{where} (Kubernetes {kubernetes_version}): {path}: "
                             f"{getattr(error, 'message', error)}") from None
