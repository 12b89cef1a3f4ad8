"""Shared fixtures: tiny models made on the spot, and real servers on free ports."""

from __future__ import annotations

import csv
import glob
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lanes import LANES, costs
from servers import running_server

if TYPE_CHECKING:
    from tuneship.deploy import TritonServer

def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker (one per core) runs its own tests: math libraries keep to one thread there,
    or two workers' thread pools spin against each other on two cores. Set before torch is imported; training
    subprocesses and the servers' stubs inherit it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, "1")


# The lanes (tests/lanes.py): markers come from the fixtures a test uses; everything else is `fast`.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        definitions = info.name2fixturedefs if info is not None else {}
        for name in getattr(item, "fixturenames", ()):
            for definition in definitions.get(name, ()):
                for marker in getattr(definition.func, "tuneship_costs", ()):
                    if item.get_closest_marker(marker) is None:
                        item.add_marker(marker)
        if not any(item.get_closest_marker(lane) for lane in LANES):
            item.add_marker("fast")


@pytest.fixture(autouse=True)
def _fast_lane_starts_no_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts an embedded Triton must be in the integration lane (else `-m fast` or `-m "not
    integration"` would start servers)."""
    if request.node.get_closest_marker("integration") is not None:
        return
    from tuneship.deploy.server import TritonServer

    def refuse(self: object) -> object:
        raise AssertionError(f"{request.node.nodeid} starts a Triton server but is not marked integration: use a "
                             "server fixture marked @costs('integration') or mark the test pytest.mark.integration")

    monkeypatch.setattr(TritonServer, "start", refuse)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """A failed test that used an embedded server gets the server's state and log tail in its report: a
    server-side cause (a crash, a failed endpoint) is then visible in CI output instead of lost with the temp
    folder."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    from tuneship.deploy import TritonServer

    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, TritonServer):
            try:
                tail = "\n".join(value.log_text().splitlines()[-40:])
                state = "running" if value.pid is not None else "not running"
                report.sections.append((f"embedded server {name!r} ({state}; {value.listening()})", tail))
            except Exception as error:  # a report must never fail on its extras
                report.sections.append((f"embedded server {name!r}", f"no log: {error}"))


def require_tool(name: str) -> str:
    """Path of a command the test needs; missing fails under CI (scripts/test.sh installs it), else skips."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: scripts/test.sh installs the Debian package prometheus")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return found


POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "delightful", "charming", "gripping"]
NEGATIVE = ["awful", "dull", "boring", "terrible", "tedious", "bland", "clumsy", "lifeless"]
FILLER = ["the", "film", "story", "acting", "movie", "plot", "was", "really", "quite", "and", "its", "cast"]


def kill_at_first_checkpoint(command: list[str], work: Path, timeout_s: float = 120.0) -> int:
    """Start a training command, SIGKILL it as soon as its work folder holds a complete Trainer checkpoint, and
    return that checkpoint's step (what --resume must continue from)."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            if any((c / "trainer_state.json").is_file() for c in work.glob("checkpoint-*")):
                break
            time.sleep(0.05)
        assert process.poll() is None, "training finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    return max(int(c.name.split("-")[1]) for c in work.glob("checkpoint-*"))


def synthetic_reviews(count: int, seed: int, positive: Sequence[str] = POSITIVE, negative: Sequence[str] = NEGATIVE,
                      filler: Sequence[str] = FILLER, words: tuple[int, int] = (3, 8)) -> list[tuple[str, str]]:
    """Short texts whose label is given by one sentiment word: learnable in seconds by a tiny model."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = "positive" if index % 2 == 0 else "negative"
        text = rng.sample(list(filler), rng.randint(*words))
        text.insert(rng.randint(0, len(text)), rng.choice(positive if label == "positive" else negative))
        rows.append((" ".join(text), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer, saved as a local folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tuneship.trainer.text.base_models import resolve_base_model

    path = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_base_model("minilm")))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def review_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("reviews")
    return (write_csv(folder / "train.csv", synthetic_reviews(400, seed=1)),
            write_csv(folder / "eval.csv", synthetic_reviews(60, seed=2)))


@pytest.fixture(scope="session")
@costs("slow")
def tiny_repository(tiny_bert: Path, review_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the `tiny` sentiment ensemble (fp32), trained in seconds."""
    from tuneship.exporter import TextExportOptions, export_checkpoint
    from tuneship.trainer import TextTrainConfig, train

    folder = tmp_path_factory.mktemp("tiny-repository")
    train(TextTrainConfig(data=str(review_files[0]), eval_file=str(review_files[1]), model=str(tiny_bert),
                      output=str(folder / "ckpt"), epochs=4, learning_rate=3e-3, warmup_ratio=0.0, batch_size=16,
                      max_length=32, seed=7))
    export_checkpoint(TextExportOptions(checkpoint=folder / "ckpt", name="tiny", repository=folder / "repo",
                                    precision="fp32", optimize=False))
    return folder / "repo"


@pytest.fixture(scope="session")
@costs("slow")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama with SmolLM2's tokenizer and chat template (read from the bundled GGUF)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tuneship.trainer.instruct.base_model import GGUF_MODELS, cache_root

    cached = cache_root() / "models" / "smollm2"
    if (cached / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(str(cached))
    else:
        import importlib.util

        package, gguf_file, _, _ = GGUF_MODELS["smollm2"]
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations
        tokenizer = AutoTokenizer.from_pretrained(next(iter(spec.submodule_search_locations)), gguf_file=gguf_file)
    path = tmp_path_factory.mktemp("tiny-llama")
    # head size 16: onnxruntime-genai's GroupQueryAttention kernel takes multiples of 16 only.
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(path))
    # A long context, so a test's stream can outlast the time its cancellation takes to arrive on a busy machine.
    tokenizer.model_max_length = 4096
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
@costs("slow")
def instruct_checkpoint(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneship.trainer import InstructTrainConfig, train

    output = tmp_path_factory.mktemp("instruct") / "ckpt"
    train(InstructTrainConfig(task="instruct", data="rotten-tomatoes", model=str(tiny_llama), output=str(output),
                      max_train_samples=48, max_eval_samples=8, exact_match_samples=8, max_steps=12, batch_size=4,
                      learning_rate=5e-3, max_length=96, precision="fp32", seed=3))
    return output


@pytest.fixture(scope="session")
@costs("slow")
def generator_repository(instruct_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneship.exporter import (
        GenerationServing,
        InstructExportOptions,
        export_checkpoint,
    )

    repository = tmp_path_factory.mktemp("generator-repo")
    export_checkpoint(InstructExportOptions(checkpoint=instruct_checkpoint, name="chat", repository=repository,
                                    precision="fp32", gate_samples=8,
                                    generation=GenerationServing(intra_op_threads=2)))
    return repository


@pytest.fixture(scope="session")
@costs("integration")
def generator_server(generator_repository: Path) -> Iterator[TritonServer]:
    """One server on the generator repository for the modules that only send it requests (the served generator's
    tests, the OpenAI-compatible API's): each compares its own counts before and after. A short exit grace: the
    healing test's killed stub leaves a request Triton counts as in flight until its grace period ends."""
    with running_server(generator_repository, exit_timeout_s=2) as server:
        yield server


@pytest.fixture(scope="session")
@costs("integration")
def tiny_server(tiny_repository: Path) -> Iterator[TritonServer]:
    """One server on the `tiny` repository for every module that only sends it requests (each test compares its
    own before and after): it starts once instead of once per module."""
    with running_server(tiny_repository) as server:
        yield server


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
@costs("integration")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server in a scratch directory, on loopback, for the store's PostgreSQL path."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs it in CI)")
    pytest.importorskip("psycopg")
    from tuneship.deploy import free_port

    folder = Path(tempfile.mkdtemp(prefix="tuneship-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres user
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    try:
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U",
                        "tuneship"], check=True, capture_output=True)
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-w", "-l",
                        str(folder / "log"), "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        yield f"postgresql+psycopg://tuneship@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-w", "-m", "fast",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
