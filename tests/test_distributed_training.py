"""Training on several processes, for real: `torchrun` and `accelerate launch` start 2 ranks on this CPU (gloo),
the batches are sharded, one rank speaks, and the checkpoint holds the weights every rank ended with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_csv

pytestmark = pytest.mark.slow

HEADER = "training on 2 processes (1 node(s), gloo)"


def _environment(tmp_path: Path) -> dict[str, str]:
    # accelerate reads a user's default config from HF_HOME: the tests use none.
    return {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "tuneship",
            "train", *arguments]


def _run(command: list[str], tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_environment(tmp_path))


def _text_arguments(tiny_bert: Path, files: tuple[Path, Path], output: Path, *extra: str) -> list[str]:
    return ["--data", str(files[0]), "--eval-file", str(files[1]), "--model", str(tiny_bert), "--output", str(output),
            "--batch-size", "8", "--max-length", "32", "--learning-rate", "1e-3", "--logging-steps", "5", *extra]


def _manifest(checkpoint: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((checkpoint / "tuneship.json").read_text())
    return manifest


def _assert_trained_on_two_ranks(result: subprocess.CompletedProcess[str], checkpoint: Path) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count(HEADER) == 1, "rank 0 alone announces the run"
    assert result.stdout.count("checkpoint: ") == 1, "rank 0 alone reports the checkpoint"
    manifest = _manifest(checkpoint)
    record = manifest["distributed"]
    assert record["world_size"] == 2 and record["backend"] == "gloo" and record["nodes"] == 1
    assert record["parameters_sha256"].startswith("sha256:")
    return manifest


def _epoch_of_last_step(checkpoint: Path) -> tuple[float, int]:
    log = json.loads((checkpoint / "training_log.json").read_text())
    last = [e for e in log if "loss" in e][-1]
    return float(last["epoch"]), int(last["step"])


def test_accelerate_launch_lora_saves_the_adapter_every_rank_trained(
        tiny_bert: Path, review_files: tuple[Path, Path], tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from tuneship.deploy import free_port
    from tuneship.trainer.distributed import parameters_digest

    output = tmp_path / "lora"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(free_port()), "-m", "tuneship", "train", "--method", "lora",
               *_text_arguments(tiny_bert, review_files, output, "--max-steps", "10")]
    manifest = _assert_trained_on_two_ranks(_run(command, tmp_path), output)
    assert _epoch_of_last_step(output)[0] == pytest.approx(10 * 2 * 8 / 400)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    trained = PeftModel.from_pretrained(base, str(output / "adapter"), is_trainable=True)
    assert parameters_digest(trained) == manifest["distributed"]["parameters_sha256"]


def test_torchrun_instruct_lora(tiny_llama: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tuneship.trainer.distributed import parameters_digest

    output = tmp_path / "instruct"
    result = _run(torchrun("--task", "instruct", "--data", "rotten-tomatoes", "--model", str(tiny_llama), "--output",
                           str(output), "--max-train-samples", "32", "--max-eval-samples", "8",
                           "--exact-match-samples", "4", "--max-steps", "4", "--batch-size", "4",
                           "--learning-rate", "5e-3", "--max-length", "96", "--precision", "fp32"), tmp_path)
    manifest = _assert_trained_on_two_ranks(result, output)
    assert result.stdout.count("measuring the base model") == 1, "rank 0 alone measures the answers"
    assert "exact_match_after" in json.loads((output / "metrics.json").read_text())
    trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_llama)), str(output / "adapter"),
                                        is_trainable=True)
    assert parameters_digest(trained) == manifest["distributed"]["parameters_sha256"]


def test_torchrun_image_fine_tuning(tmp_path: Path) -> None:
    from tuneship.trainer import load_image_classifier
    from tuneship.trainer.distributed import parameters_digest

    output = tmp_path / "faces"
    result = _run(torchrun("--task", "image-classification", "--method", "full", "--output", str(output),
                           "--image-size", "48", "--max-steps", "3", "--batch-size", "8", "--max-train-samples", "64",
                           "--max-eval-samples", "16", "--feature-cache", str(tmp_path / "cache")), tmp_path)
    manifest = _assert_trained_on_two_ranks(result, output)
    # The saved parameters are what every rank trained (BatchNorm's running statistics are buffers, not
    # parameters: DDP sends rank 0's to the others at each step, and the checkpoint has rank 0's).
    module, _ = load_image_classifier(output)
    assert parameters_digest(module) == manifest["distributed"]["parameters_sha256"]


def test_a_bad_data_file_fails_every_rank_with_one_message(tiny_bert: Path, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [("a fine film", "positive"), ("", "negative")])
    result = _run(torchrun("--data", str(bad), "--model", str(tiny_bert), "--output", str(tmp_path / "out")),
                  tmp_path, timeout=120)
    assert result.returncode != 0
    ours = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error")]
    assert ours == [f"error: {bad}:3: field 'text' is empty"], ours
    assert not (tmp_path / "out").exists()


def _worker_of_rank(launcher: subprocess.Popen[bytes], rank: int) -> int | None:
    """The pid of the worker process of one rank under torchrun (its agent is the launcher itself)."""
    for task in Path(f"/proc/{launcher.pid}/task").iterdir():
        children = (task / "children").read_text().split() if (task / "children").is_file() else []
        for pid in children:
            try:
                environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environment:
                return int(pid)
    return None


def test_torchrun_full_fine_tuning_resumes_after_one_rank_is_killed(tiny_bert: Path, review_files: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    """Rank 1 is SIGKILLed at the first checkpoint (torchrun stops rank 0); the same command with --resume finishes
    on both ranks: the data sharded, the loss a 2-class loss (not scaled by the rank count), one evaluation table,
    and the saved weights those every rank trained."""
    from transformers import AutoModelForSequenceClassification

    from tuneship.trainer.distributed import parameters_digest

    output, work = tmp_path / "run", tmp_path / ".run.work"
    arguments = _text_arguments(tiny_bert, review_files, output, "--max-steps", "40", "--eval-steps", "10")
    launcher = subprocess.Popen(torchrun(*arguments), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=_environment(tmp_path))
    try:
        deadline = time.monotonic() + 180
        while not any((c / "trainer_state.json").is_file() for c in work.glob("checkpoint-*")):
            assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint before the kill"
            time.sleep(0.05)
        victim = _worker_of_rank(launcher, 1)
        assert victim is not None, "rank 1's worker process was not found"
        os.kill(victim, signal.SIGKILL)
        assert launcher.wait(timeout=120) != 0, "a run that lost a rank must fail"
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert not output.exists(), "a killed run must not leave a final checkpoint"
    resumed = _run(torchrun(*arguments, "--resume"), tmp_path)
    manifest = _assert_trained_on_two_ranks(resumed, output)
    assert resumed.stdout.count("resuming from ") == 1
    assert resumed.stdout.count("accuracy ") == 1, "the evaluation table is printed once"
    assert json.loads((output / "metrics.json").read_text())["steps"] == 40
    # 2 ranks x 8 texts a step over 400 texts: step 40 is epoch 1.6 (one process would be at 0.8)
    epoch, step = _epoch_of_last_step(output)
    assert step == 40 and epoch == pytest.approx(40 * 2 * 8 / 400)
    losses = [e["loss"] for e in json.loads((output / "training_log.json").read_text()) if "loss" in e]
    assert all(0.05 < loss < 1.0 for loss in losses), f"a 2-class loss, not scaled by the rank count: {losses}"
    saved = AutoModelForSequenceClassification.from_pretrained(str(output))
    assert parameters_digest(saved) == manifest["distributed"]["parameters_sha256"]
    assert not work.exists()


def test_ranks_that_read_different_data_are_refused(tmp_path: Path) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(
        "import os\n"
        "from tuneship.trainer import distributed\n"
        "with distributed.session():\n"
        "    distributed.agree('training data', 'same')\n"
        "    distributed.agree('training data', 'sha256:' + os.environ['RANK'])\n")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(script)], capture_output=True, text=True, timeout=120, env=_environment(tmp_path))
    assert result.returncode != 0
    assert ("rank 1 read different training data than rank 0 (sha256:1 against sha256:0)"
            in result.stdout + result.stderr)
