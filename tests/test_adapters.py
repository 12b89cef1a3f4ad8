"""LoRA adapters per request: two instruction tunes of the tiny Llama (different tasks) published as adapters of
its base, answered in one batch as PEFT answers them, published and removed while the real Triton serves."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lanes import costs
from servers import running_server
from waiting import wait_for

from tuneship.client import Generator, InvalidInputError, TritonClient
from tuneship.deploy import TritonServer
from tuneship.exporter.errors import ExportError
from tuneship.repository import RepositoryError

REVIEW = "Is this review positive or negative? Answer with one word.\n\nA gripping, beautifully acted film."
TWEET = "Is this tweet positive, negative or neutral? Answer with one word.\n\nugh, mondays again"
TOKENS = 10


@pytest.fixture(scope="session")
@costs("slow")
def tweets_checkpoint(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tuneship.trainer import InstructTrainConfig, train

    output = tmp_path_factory.mktemp("tweets") / "ckpt"
    train(InstructTrainConfig(task="instruct", data="tweets", model=str(tiny_llama), output=str(output),
                              max_train_samples=48, max_eval_samples=8, exact_match_samples=8, max_steps=12,
                              batch_size=4, learning_rate=5e-3, max_length=96, precision="fp32", seed=4))
    return output


@pytest.fixture(scope="module")
@costs("slow")
def adapter_repository(instruct_checkpoint: Path, tweets_checkpoint: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`base`: the tiny Llama itself (--base-model); `reviews` published as its adapter (tweets: by the tests)."""
    from tuneship.exporter import GenerationServing, InstructExportOptions, export_checkpoint

    repository = tmp_path_factory.mktemp("adapter-repo")
    export_checkpoint(InstructExportOptions(checkpoint=instruct_checkpoint, name="base", repository=repository,
                                            precision="fp32", gate_samples=8, base_model=True,
                                            generation=GenerationServing(intra_op_threads=2)))
    export_checkpoint(InstructExportOptions(checkpoint=instruct_checkpoint, name="reviews", repository=repository,
                                            adapter_of="base", gate_samples=8))
    return repository


def _peft_answer(checkpoint: Path | None, base: Path, prompt: str) -> str:
    """Greedy answer of the base model with the checkpoint's adapter applied by PEFT (not merged)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForCausalLM.from_pretrained(str(base)).eval()
    if checkpoint is not None:
        model = PeftModel.from_pretrained(model, str(checkpoint / "adapter")).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=TOKENS, do_sample=False)
    return str(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)).strip()


@pytest.mark.slow
def test_a_mixed_batch_answers_each_adapter_as_peft_and_leaves_the_base_unchanged(
        adapter_repository: Path, instruct_checkpoint: Path, tweets_checkpoint: Path, tiny_llama: Path,
        tmp_path: Path) -> None:
    """In process: base rows and rows of two adapters decode in the same steps; each row's tokens are the ones
    PEFT gives its adapter alone, and the base rows' are the same as before any adapter was loaded."""
    from transformers import AutoTokenizer

    from tuneship.exporter import InstructExportOptions, export_checkpoint

    repository = tmp_path / "repo"
    shutil.copytree(adapter_repository, repository)
    export_checkpoint(InstructExportOptions(checkpoint=tweets_checkpoint, name="tweets", repository=repository,
                                            adapter_of="base", gate_samples=8))
    from tuneship.serving import Engine, LoraWeights, Request, SamplingParams

    folder = repository / "base" / "1"

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    prompts = {p: list(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                     return_dict=True)["input_ids"]) for p in (REVIEW, TWEET)}
    batcher = Engine(str(folder), slots=6, threads=2)

    def run(jobs: list[tuple[str | None, str]]) -> list[str]:
        got: list[list[int]] = [[] for _ in jobs]
        done = threading.Semaphore(0)
        with batcher.condition:  # all queued before the loop looks: they share steps
            for (adapter, prompt), tokens in zip(jobs, got, strict=True):
                batcher.submit(Request(prompts[prompt], SamplingParams(max_tokens=TOKENS, adapter=adapter),
                                       lambda t, tokens=tokens: tokens.append(t) or True,
                                       lambda _reason, error: done.release()))
        for _ in jobs:
            assert done.acquire(timeout=60)
        return [str(tokenizer.decode(t, skip_special_tokens=True)).strip() for t in got]

    try:
        alone = run([(None, REVIEW), (None, TWEET)])
        batcher.set_adapters({name: LoraWeights.load(str(repository / "base" / "adapters" / name))
                              for name in ("reviews", "tweets")})
        jobs: list[tuple[str | None, str]] = [(a, p) for a in (None, "reviews", "tweets") for p in (REVIEW, TWEET)]
        mixed = run(jobs)
        # Removed while a request still decodes with it: refused to new requests at once, kept for that one,
        # dropped when it finishes.
        finished = threading.Event()
        with batcher.condition:  # queued before the loop sees the removal: in use when it is applied
            batcher.submit(Request(prompts[TWEET], SamplingParams(max_tokens=64, min_tokens=64, adapter="tweets"),
                                   lambda _t: True, lambda _reason, _error: finished.set()))
            batcher.set_adapters({"reviews": batcher.adapter_names["reviews"]})
            assert batcher.adapters() == {"reviews"}
        assert finished.wait(timeout=60)
        wait_for(lambda: set(batcher.adapter_names) == {"reviews"}, "the removed adapter dropped once unused")
    finally:
        batcher.close()
    assert max(batcher.batch_sizes) >= 3
    expected = {None: None, "reviews": instruct_checkpoint, "tweets": tweets_checkpoint}
    assert mixed == [_peft_answer(expected[a], tiny_llama, p) for a, p in jobs]
    assert mixed[:2] == alone
    assert mixed[2:4] != mixed[4:6]  # two tunes, two behaviours


@pytest.mark.slow
def test_an_adapter_of_other_weights_or_a_bad_name_is_refused(adapter_repository: Path, generator_repository: Path,
                                                             tweets_checkpoint: Path, tmp_path: Path) -> None:
    from tuneship.exporter import InstructExportOptions, export_checkpoint

    repository = tmp_path / "repo"
    shutil.copytree(adapter_repository, repository)
    shutil.copytree(generator_repository / "chat", repository / "merged")  # a merged tune, not the base
    with pytest.raises(ExportError, match=r"tuned from .* but merged v1 serves .*--base-model --name merged"):
        export_checkpoint(InstructExportOptions(checkpoint=tweets_checkpoint, name="tweets",
                                                repository=repository, adapter_of="merged", gate_samples=8))
    with pytest.raises(ExportError, match="--name: adapter name"):
        export_checkpoint(InstructExportOptions(checkpoint=tweets_checkpoint, name="_x", repository=repository,
                                                adapter_of="base", gate_samples=8))
    with pytest.raises(RepositoryError, match="is 'nope' in this repository"):
        export_checkpoint(InstructExportOptions(checkpoint=tweets_checkpoint, name="tweets",
                                                repository=repository, adapter_of="nope", gate_samples=8))
    assert not (repository / "merged" / "adapters").exists() and not (repository / "tweets").exists()


@pytest.fixture(scope="module")
@costs("integration")
def server(adapter_repository: Path) -> Iterator[TritonServer]:
    with running_server(adapter_repository) as running:
        yield running


def _samples(server: TritonServer, name: str) -> dict[str, float]:
    raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
            if line.startswith(name + "{")}


def _answer(generator: Generator, prompt: str, **params: Any) -> str:
    return generator.generate([{"role": "user", "content": prompt}], max_tokens=TOKENS, **params).text.strip()


@pytest.mark.slow
@pytest.mark.integration
def test_mixed_requests_finish_correctly_together_and_a_bad_one_harms_none(server: TritonServer,
                                                                           instruct_checkpoint: Path,
                                                                           tiny_llama: Path) -> None:
    """Plain, choice, regex, JSON-schema, adapter and session requests at once (one engine, shared steps), with a
    bad schema and a bad regex among them: each good one answers as it does alone, the bad ones are refused by name."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    schema = {"type": "object", "properties": {"label": {"enum": ["positive", "negative"]}}, "required": ["label"],
              "additionalProperties": False}
    jobs: dict[str, dict[str, Any]] = {
        "plain": {}, "choice": {"choices": ["positive", "negative"]}, "regex": {"regex": "(yes|no)!"},
        "json": {"json_schema": schema}, "adapter": {"adapter": "reviews"},
        "adapter+choice": {"adapter": "reviews", "choices": ["positive", "negative"]},
        "session": {"session": "mixed-1"}, "plain again": {},
        "bad schema": {"json_schema": {"type": "no-such-type"}}, "bad regex": {"regex": "(unclosed"},
    }

    def run(name: str) -> Any:
        with TritonClient(server.grpc_url) as client:
            try:
                return _answer(Generator(client, "base"), REVIEW, **jobs[name])
            except InvalidInputError as error:
                return error

    with ThreadPoolExecutor(len(jobs)) as pool:
        together = dict(zip(jobs, pool.map(run, jobs), strict=True))
    alone = {name: run(name) for name in jobs if not name.startswith("bad")}
    for name, answer in alone.items():
        assert together[name] == answer, (name, together[name], answer)
    assert together["plain"] == _peft_answer(None, tiny_llama, REVIEW)
    assert together["adapter"] == _peft_answer(instruct_checkpoint, tiny_llama, REVIEW)
    assert together["choice"] in ("positive", "negative") and together["adapter+choice"] in ("positive", "negative")
    assert together["regex"] in ("yes!", "no!")
    assert json.loads(together["json"])["label"] in ("positive", "negative")
    assert isinstance(together["bad schema"], InvalidInputError) and "guided_json" in str(together["bad schema"])
    assert isinstance(together["bad regex"], InvalidInputError) and "guided_regex" in str(together["bad regex"])


@pytest.mark.slow
@pytest.mark.integration
def test_adapters_are_chosen_per_request_published_and_removed_without_a_reload(
        server: TritonServer, adapter_repository: Path, instruct_checkpoint: Path, tweets_checkpoint: Path,
        tiny_llama: Path) -> None:
    from tuneship.cli import main
    from tuneship.exporter import InstructExportOptions, export_checkpoint

    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "base")
        assert _answer(generator, REVIEW) == _peft_answer(None, tiny_llama, REVIEW)
        assert _answer(generator, REVIEW, adapter="reviews") == _peft_answer(instruct_checkpoint, tiny_llama, REVIEW)
        with pytest.raises(InvalidInputError, match=r"adapter 'tweets' is not published .*\(published: reviews\)"):
            _answer(generator, TWEET, adapter="tweets")
        # A constrained answer through an adapter: the adapter's row, masked by its grammar, in the same batch.
        assert _answer(generator, REVIEW, adapter="reviews", choices=["positive", "negative"]) in ("positive",
                                                                                                  "negative")
        # Published while a long stream runs: the stream finishes, the new adapter answers, nothing reloads.
        stream = generator.stream([{"role": "user", "content": REVIEW}], max_tokens=400, min_tokens=400)
        first = next(iter(stream))
        export_checkpoint(InstructExportOptions(checkpoint=tweets_checkpoint, name="tweets",
                                                repository=adapter_repository, adapter_of="base", gate_samples=8))
        assert _answer(generator, TWEET, adapter="tweets") == _peft_answer(tweets_checkpoint, tiny_llama, TWEET)
        rest = "".join(stream)
        assert stream.generation is not None and stream.generation.tokens == 400 and first + rest
        assert main(["adapters", "base", "--repository", str(adapter_repository), "--remove", "tweets"]) == 0

        def refused() -> bool:
            try:
                _answer(generator, TWEET, adapter="tweets")
            except InvalidInputError:
                return True
            return False

        try:
            wait_for(refused, "the removed adapter refused", timeout_s=60, interval_s=0.5)
        except AssertionError as error:
            raise AssertionError(f"{error}; the server's log ends: {server.log_text()[-2000:]}") from None
        # The adapter's own copy of the template's opening served this prompt (the base model's would be wrong).
        again = generator.generate([{"role": "user", "content": REVIEW}], max_tokens=TOKENS, adapter="reviews")
        assert again.text.strip() == _peft_answer(instruct_checkpoint, tiny_llama, REVIEW)
        assert again.cached_prompt_tokens is not None and again.cached_prompt_tokens > 0
    index = json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://{server.http_url}/v2/repository/index", data=b"{}", method="POST"), timeout=10).read())
    assert [(m["name"], m.get("version"), m.get("state")) for m in index] == [("base", "1", "READY")]

    def counted_for_both() -> dict[str, float] | None:
        found = _samples(server, "tuneship_generation_tokens_total")
        both = all(any(f'adapter="{name}"' in k for k in found) for name in ("tweets", "reviews"))
        return found if both else None

    tokens = wait_for(counted_for_both, "both adapters' tokens counted")
    labelled = {k: v for k, v in tokens.items() if 'adapter="reviews"' in k}
    assert labelled and sum(labelled.values()) >= 2
    unlabelled = [k for k in tokens if "adapter=" not in k]
    assert unlabelled and sum(tokens[k] for k in unlabelled) >= 400


@pytest.mark.integration
def test_an_adapter_is_updated_as_an_adapter_and_served_without_a_reload(
        adapter_repository: Path, instruct_checkpoint: Path, tmp_path: Path) -> None:
    """`tuneship update --model base:reviews`: a new LoRA from the base it is served on, on the corrections and a
    replay of its own data; gated with both adapters on the same base version, and published by replacing the
    adapter's folder, which the running generator picks up (its base version unchanged)."""
    from genai import corrections
    from transformers import AutoTokenizer

    from tuneship.exporter.instruct.measure import served_greedy
    from tuneship.monitor.update import UPDATES_FILE, UpdateError, UpdateOptions, run_update
    from tuneship.repository import existing_versions
    from tuneship.trainer import prompt_ids
    from tuneship.trainer.instruct.data import Conversation

    repository = tmp_path / "repo"
    shutil.copytree(adapter_repository, repository)
    with running_server(repository) as server:
        report = run_update(UpdateOptions(
            name="base:reviews", new_data=corrections(tmp_path / "right.jsonl", instruct_checkpoint, flip=False),
            output=tmp_path / "reviews-u1", repository=repository, url=server.grpc_url, margin_points=10.0,
            max_original_drop_points=0.0, epochs=2.0))
        assert report.passed, report.reason
        assert report.published_versions == {"base": 1} and existing_versions(repository / "base") == [1]
        adapter = repository / "base" / "adapters" / "reviews"
        assert json.loads((adapter / "adapter.json").read_text())["checkpoint"] == str(tmp_path / "reviews-u1")
        tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "reviews-u1"))
        expected = tokenizer.decode(served_greedy(
            repository / "base" / "1", [prompt_ids(tokenizer, Conversation(
                [{"role": "user", "content": REVIEW}, {"role": "assistant", "content": ""}], ""))], TOKENS, 8,
            adapter)[0], skip_special_tokens=True).strip()
        with TritonClient(server.grpc_url) as client:  # the generator looks at its adapters' folder every 2 s
            wait_for(lambda: Generator(client, "base").generate(
                REVIEW, max_tokens=TOKENS, adapter="reviews").text.strip() == expected,
                "the updated adapter's answer served", timeout_s=60, interval_s=0.5)
    gained, kept = report.rows
    assert gained["candidate"] >= gained["serving"] + 0.1 and kept["candidate"] >= kept["serving"], report.rows
    records = [json.loads(line) for line in (repository / "base" / UPDATES_FILE).read_text().splitlines()]
    assert [(r["name"], r["passed"]) for r in records] == [("base:reviews", True)]
    # The base itself (published with --base-model) is not a tuned checkpoint to continue: its adapters are.
    with pytest.raises(UpdateError, match=r"serves the base model .* update its adapters"):
        run_update(UpdateOptions(name="base", new_data=tmp_path / "right.jsonl", output=tmp_path / "b",
                                 repository=repository))
