"""Label Studio's formats, both ways: the queue goes out as tasks to import (each with the model's answer as a
pre-annotation, and the labelling interface as a config), and the project's JSON export comes back as labels.

Formats as Label Studio documents them: a task is `{"data": {...}, "predictions": [{"model_version", "score",
"result": [{"from_name", "to_name", "type": "choices", "value": {"choices": [label]}}]}]}`; the export (JSON) is
the tasks with their `id` and `annotations` (each with the same `result` shape, `was_cancelled`); the JSON-MIN
export flattens a task to its data fields plus the chosen label under the control's name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

if TYPE_CHECKING:
    from tuneship.monitor.queue import Pick

TEXT, CHOICE = "text", "label"  # the interface's text object and its choices control
MARK = "tuneship_queue"  # in a task's data: the queue it came from; with the model's name beside it


class LabelStudioError(ValueError):
    """A Label Studio file that cannot be imported; the message names the task."""


def label_config(labels: Sequence[str]) -> str:
    """The labelling interface: the text, and one choice per class of the model."""
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (f'<View>\n  <Text name="{TEXT}" value="${TEXT}"/>\n'
            f'  <Choices name="{CHOICE}" toName="{TEXT}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def _result(label: str) -> list[dict[str, Any]]:
    return [{"from_name": CHOICE, "to_name": TEXT, "type": "choices", "value": {"choices": [label]}}]


def tasks(picks: Sequence[Pick], model: str, queue_id: str, labels: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for pick in picks:
        data = {TEXT: pick.text, MARK: queue_id, "tuneship_model": model, "tuneship_reason": pick.reason,
                "tuneship_source": pick.source}
        task: dict[str, Any] = {"data": data}
        suggested = pick.predicted if pick.predicted in labels else None
        if suggested is not None:
            version = f"{model}/{pick.version}" if pick.version else model
            task["predictions"] = [{"model_version": version, "score": pick.confidence or 0.0,
                                    "result": _result(suggested)}]
        out.append(task)
    return out


@dataclass
class Labelled:
    task: str  # Label Studio's task id (or its position in the file when it has none)
    text: str
    label: str


def _choice(result: Any) -> str | None:
    for item in result if isinstance(result, list) else []:
        if isinstance(item, dict) and item.get("type") == "choices" and item.get("from_name", CHOICE) == CHOICE:
            choices = item.get("value", {}).get("choices") or []
            if choices:
                return str(choices[0])
    return None


def _annotation(task: dict[str, Any]) -> str | None:
    """The label of a task's latest annotation that was not cancelled (None: nobody labelled it)."""
    kept = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    kept.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
    for annotation in reversed(kept):
        label = _choice(annotation.get("result"))
        if label is not None:
            return label
    return None


def read_export(path: Path, model: str, labels: Sequence[str]) -> tuple[list[Labelled], int]:
    """The labelled tasks of a Label Studio export (JSON or JSON-MIN), checked whole before anything is kept;
    returns them and how many tasks nobody labelled."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LabelStudioError(f"{path}:{error.lineno}: not JSON ({error.msg})") from None
    if not isinstance(raw, list):
        raise LabelStudioError(f"{path}: not a Label Studio export (a JSON list of tasks)")
    found: list[Labelled] = []
    skipped = 0
    for position, task in enumerate(raw, start=1):
        if not isinstance(task, dict):
            raise LabelStudioError(f"{path}: task {position} is not an object")
        name = str(task.get("id", f"#{position}"))
        minimal = "annotations" not in task and "data" not in task
        data = task if minimal else task.get("data") or {}
        if data.get("tuneship_model", model) != model:
            raise LabelStudioError(f"{path}: task {name} was queued for model {data['tuneship_model']!r}, not "
                                   f"{model!r}: this is another project's export")
        text = data.get(TEXT)
        if not isinstance(text, str) or not text.strip():
            raise LabelStudioError(f"{path}: task {name} has no data.{TEXT} (the queue's interface labels a text "
                                   "field named 'text')")
        label = data.get(CHOICE) if minimal else _annotation(task)
        if isinstance(label, dict):  # JSON-MIN keeps a multi-choice control's answer as {"choices": [...]}
            label = (label.get("choices") or [None])[0]
        if label is None:
            skipped += 1
            continue
        if label not in labels:
            raise LabelStudioError(f"{path}: task {name} is labelled {label!r}, which {model} does not answer "
                                   f"(its labels: {', '.join(labels)})")
        found.append(Labelled(name, text, str(label)))
    return found, skipped
