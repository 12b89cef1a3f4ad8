"""A training process killed with SIGKILL continues from its last checkpoint with --resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kill_at_first_checkpoint

pytestmark = pytest.mark.slow


def _command(tiny_bert: Path, files: tuple[Path, Path], output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuneship", "train", "--data", str(files[0]), "--eval-file", str(files[1]),
            "--model", str(tiny_bert), "--output", str(output), "--max-steps", "150", "--eval-steps", "10",
            "--batch-size", "8", "--max-length", "32", "--logging-steps", "10", "--learning-rate", "1e-3", *extra]


def test_sigkill_then_resume_finishes_the_run(tiny_bert: Path, review_files: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    output = tmp_path / "run"
    work = tmp_path / ".run.work"
    killed_at = kill_at_first_checkpoint(_command(tiny_bert, review_files, output), work)
    assert not output.exists(), "a killed run must not leave a final checkpoint"
    assert killed_at < 150

    resumed = subprocess.run(_command(tiny_bert, review_files, output, "--resume"), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {work / f'checkpoint-{killed_at}'}" in resumed.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["steps"] == 150
    log = json.loads((output / "training_log.json").read_text())
    steps = [e["step"] for e in log if "loss" in e]
    assert steps == sorted(set(steps)) and steps[-1] == 150, "each step is logged once, in order"
    assert not work.exists()


def test_partial_checkpoints_are_skipped(tmp_path: Path) -> None:
    from tuneship.trainer.run import last_complete_checkpoint

    for step, complete in ((10, True), (20, True), (30, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
            (folder / "optimizer.pt").write_bytes(b"")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert last_complete_checkpoint(tmp_path / "none") is None


def test_resume_with_other_options_is_refused(tiny_bert: Path, review_files: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    work = tmp_path / ".run.work"
    work.mkdir()
    (work / "tuneship-run.json").write_text(json.dumps({"method": "lora"}))
    result = subprocess.run(_command(tiny_bert, review_files, tmp_path / "run", "--resume"), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "--resume: the interrupted run used method='lora'" in result.stderr
