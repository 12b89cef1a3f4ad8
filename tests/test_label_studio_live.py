"""The labelling queue through a real Label Studio: a project made with the queue's interface, its tasks imported,
annotated through Label Studio's API as a person would in the browser, exported as JSON, and imported back into
the feedback store.

Label Studio lives in its own virtualenv (about 1 GB: Django and its stack; `bash benchmarks/setup_label_studio_venv.sh`
makes `.venv-label-studio`, or point TUNESHIP_LABEL_STUDIO at another's `bin`). CI does not install it: its
install alone would take a fifth of the suite's time budget; there the formats are tested against Label Studio's
documented shapes (tests/test_label_queue.py)."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_label_queue import LABELS, _store_with_predictions
from waiting import wait_for

from tuneship.cli import main
from tuneship.deploy import free_port
from tuneship.monitor import FeedbackStore

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "0123456789abcdef0123456789abcdef01234567"


def _label_studio() -> Path:
    folder = Path(os.environ.get("TUNESHIP_LABEL_STUDIO", ROOT / ".venv-label-studio" / "bin"))
    program = folder / "label-studio"
    if not program.is_file():
        pytest.skip(f"Label Studio is not installed ({program}): bash benchmarks/setup_label_studio_venv.sh")
    return program


def _call(url: str, path: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}{path}", data=data, method=method or ("POST" if data else "GET"),
                                     headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.integration
def test_a_queue_labelled_in_a_real_label_studio_comes_back_into_the_store(tmp_path: Path) -> None:
    program = _label_studio()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "label-studio"),
                   "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true"}
    log = (tmp_path / "label-studio.log").open("wb")
    server = subprocess.Popen([str(program), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
                               str(port), "--username", "labeller@example.com", "--password", "not-a-secret-1",
                               "--user-token", TOKEN], stdout=log, stderr=log, env=environment)
    try:
        wait_for(lambda: _up(url) or server.poll() is not None, "Label Studio up", timeout_s=240, interval_s=1)
        assert server.poll() is None, (tmp_path / "label-studio.log").read_text()[-2000:]
        store = _store_with_predictions(tmp_path)
        queue = tmp_path / "queue"
        assert main(["feedback", "queue", "--model", "sentiment", "--store", str(store), "--output", str(queue),
                     "--size", "6"]) == 0
        project = _call(url, "/api/projects", {"title": "tuneship queue",
                                               "label_config": (queue / "label_config.xml").read_text()})
        imported = _call(url, f"/api/projects/{project['id']}/import", json.loads((queue / "tasks.json").read_text()))
        assert imported["task_count"] == 6
        tasks = _call(url, f"/api/tasks?project={project['id']}&page_size=100&fields=all")["tasks"]
        assert all(task["predictions"] for task in tasks)  # the model's answers came in as pre-annotations
        labelled = {}
        for index, task in enumerate(sorted(tasks, key=lambda t: t["id"])[:5]):  # a person labels five of six
            label = LABELS[index % 2]
            _call(url, f"/api/tasks/{task['id']}/annotations",
                  {"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                               "value": {"choices": [label]}}]})
            labelled[task["data"]["text"]] = label
        export = tmp_path / "export.json"
        export.write_text(json.dumps(_call(url, f"/api/projects/{project['id']}/export?exportType=JSON")))
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    assert main(["feedback", "import", str(export), "--model", "sentiment", "--store", str(store)]) == 0
    with FeedbackStore(str(store)) as opened:
        assert {row.text: row.true_label for row in opened.labelled("sentiment")} == labelled
