"""Instruction tuning end to end on a tiny random Llama made here: data errors, training a few steps, export to
onnxruntime-genai (validated against PyTorch), serving through the real Triton with streaming, the client."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from genai import greedy_alone
from prometheus_client import CollectorRegistry
from waiting import wait_for

from tuneship.client import (
    AsyncGenerator,
    AsyncTritonClient,
    ClientMetrics,
    Generator,
    InvalidInputError,
    TritonClient,
)
from tuneship.deploy import TritonServer
from tuneship.trainer.errors import DataError
from tuneship.trainer.instruct.data import load_instruct_file

PROMPT = "Is this review positive or negative? Answer with one word.\n\nA gripping, beautifully acted film."


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("line", "message"), [
    ('{"instruction": "say hi"}', r"d\.jsonl:2: field 'output' is missing or empty"),
    ('{"instruction": "", "output": "x"}', r"d\.jsonl:2: field 'instruction' is missing or empty"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', r"d\.jsonl:2: 'messages' must be a list of at least"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "x"}]}',
     r"d\.jsonl:2: the last message must be the assistant's answer"),
    ('{"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}',
     r"d\.jsonl:2: messages\[0\]\.role is 'robot'"),
    ('{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}]}',
     r"d\.jsonl:2: messages\[0\]\.content is empty"),
    ('{"text": "a", "label": "b"}', r"d\.jsonl:2: expected 'messages' \(chat\) or 'instruction' and 'output'"),
    ("not json", r"d\.jsonl:2: not valid JSON"),
    ("[1, 2]", r"d\.jsonl:2: expected a JSON object, got list"),
])
def test_bad_instruction_data_names_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    good = '{"instruction": "Is it good?", "input": "A fine film.", "output": "positive"}'
    with pytest.raises(DataError, match=message):
        load_instruct_file(_write(tmp_path / "d.jsonl", [good, line]))


def test_alpaca_and_chat_records_become_conversations(tmp_path: Path) -> None:
    data = load_instruct_file(_write(tmp_path / "d.jsonl", [
        '{"instruction": "Is it good?", "input": "A fine film.", "output": "positive"}',
        '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Bad?"}, '
        '{"role": "assistant", "content": "negative"}]}',
        '{"instruction": "Is it good?", "input": "A fine film.", "output": "positive"}',
    ]))
    assert len(data.conversations) == 2 and data.notes  # the duplicate is dropped, with a note
    assert data.conversations[0].prompt == [{"role": "user", "content": "Is it good?\n\nA fine film."}]
    assert data.conversations[1].answer == "negative"
    assert data.answers == ["negative", "positive"]  # a closed answer set: exact match applies


@pytest.fixture(scope="module")
def server(generator_server: TritonServer) -> TritonServer:
    return generator_server


@pytest.mark.slow
def test_the_checkpoint_records_task_metrics_and_held_out_conversations(instruct_checkpoint: Path) -> None:
    manifest = json.loads((instruct_checkpoint / "tuneship.json").read_text())
    metrics = json.loads((instruct_checkpoint / "metrics.json").read_text())
    assert manifest["task"] == "instruct" and manifest["method"] == "lora" and manifest["merged"] is True
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["hyperparameters"]["lora_targets"] == "all-linear"
    assert "text_column" not in manifest["hyperparameters"] and None not in manifest["hyperparameters"].values()
    assert metrics["perplexity"] > 1 and metrics["eval_loss"] > 0
    assert 0 <= metrics["exact_match_before"] <= 1 and 0 <= metrics["exact_match_after"] <= 1
    assert (instruct_checkpoint / "adapter" / "adapter_config.json").is_file()
    assert len((instruct_checkpoint / "eval.jsonl").read_text().splitlines()) == 8


@pytest.mark.slow
def test_a_ptuning_checkpoint_is_refused_by_the_exporter_clearly(tiny_llama: Path, tmp_path: Path) -> None:
    from tuneship.exporter import ExportError, ExportOptions, export_checkpoint
    from tuneship.trainer import InstructTrainConfig, train

    output = tmp_path / "ptuning"
    train(InstructTrainConfig(task="instruct", method="ptuning", data="rotten-tomatoes", model=str(tiny_llama),
                      output=str(output), max_train_samples=16, max_eval_samples=4, exact_match_samples=0,
                      max_steps=2, batch_size=4, max_length=96, precision="fp32", num_virtual_tokens=4))
    assert json.loads((output / "tuneship.json").read_text())["method"] == "ptuning"
    with pytest.raises(ExportError, match="P-tuning checkpoint's prompt encoder cannot be folded"):
        export_checkpoint(ExportOptions(checkpoint=output, name="chat", repository=tmp_path / "repo"))
    assert not (tmp_path / "repo" / "chat").exists()


@pytest.mark.slow
def test_int4_is_k_quant_in_every_layer_with_the_output_layer_pruned(instruct_checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    """The default int4 build: every MatMul int4 (k_quant's zero points, no int8 layers), and prefill computes
    the output layer for the last position only; the gate measures it against fp32 and the report says so."""
    import onnx

    from tuneship.exporter import ExportOptions, export_checkpoint

    export_checkpoint(ExportOptions(checkpoint=instruct_checkpoint, name="chat", repository=tmp_path,
                                    precision="int4", gate_samples=8, force=True))
    report = json.loads((tmp_path / "chat" / "export_report.json").read_text())
    assert report["chosen"] == "int4" and {v["name"] for v in report["variants"]} >= {"fp32", "int4"}
    graph = onnx.load(str(tmp_path / "chat" / "1" / "model.onnx"), load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2 * 5 + 1  # qkv, o, gate, up, down per layer (2 layers), and the output layer
    assert all(next(a.i for a in n.attribute if a.name == "bits") == 4 for n in nbits)
    assert all(len(n.input) >= 4 and n.input[3] for n in nbits)  # k_quant's zero points
    lm_head = next(n for n in nbits if n.output[0] == "logits")
    producer = {o: n for n in graph.node for o in n.output}[lm_head.input[0]]
    assert producer.op_type in ("Gather", "Unsqueeze", "Slice"), producer.op_type  # the pruned prefill


@pytest.mark.slow
def test_int8_is_8_bit_weights_in_every_layer(instruct_checkpoint: Path, tmp_path: Path) -> None:
    import onnx

    from tuneship.exporter import ExportOptions, export_checkpoint
    from tuneship.exporter.instruct.measure import GenaiRunner

    export_checkpoint(ExportOptions(checkpoint=instruct_checkpoint, name="chat", repository=tmp_path,
                                    precision="int8", gate_samples=8, force=True))
    report = json.loads((tmp_path / "chat" / "export_report.json").read_text())
    assert report["chosen"] == "int8" and [v["name"] for v in report["variants"]] == ["fp32", "int8"]
    graph = onnx.load(str(tmp_path / "chat" / "1" / "model.onnx"), load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2 * 5 + 1 and all(next(a.i for a in n.attribute if a.name == "bits") == 8 for n in nbits)
    tokens, _ = GenaiRunner(tmp_path / "chat" / "1").greedy([1, 2, 3, 4], 4)
    assert len(tokens) >= 1


@pytest.mark.integration
def test_chat_lists_its_commands_for_an_unknown_one_and_stats_say_when_an_answer_is_too_short(
        server: TritonServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from tuneship.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("/help\nHello there\n/exit\n"))
    assert main(["chat", "--url", server.grpc_url, "--model", "chat", "--max-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert "unknown command /help: /reset starts over, /exit" in out  # not sent to the model
    assert out.count("chat> ") == 1  # one answer: to the one message
    assert main(["generate", "--url", server.grpc_url, "--max-tokens", "1", "--stats", PROMPT]) == 0
    err = capsys.readouterr().err
    assert "1 tokens" in err and "too short for a decode speed" in err and "0.0 tokens/s" not in err


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gptq", "hqq"])
def test_calibrated_4_bit_builds_quantize_every_layer_of_the_fp32_build(generator_repository: Path, tmp_path: Path,
                                                                        method: str) -> None:
    import onnx

    from tuneship.exporter.instruct.build import GenaiVariant
    from tuneship.exporter.instruct.calibrated import build_calibrated
    from tuneship.exporter.instruct.measure import GenaiRunner

    fp32 = GenaiVariant("fp32", "fp32", generator_repository / "chat" / "1", "cpu")
    built = build_calibrated(fp32, tmp_path, method, prompts=[[1, 9690, 198, 2683, 359, 253], [1, 4093, 198, 72]])
    graph = onnx.load(str(built.path / "model.onnx"), load_external_data=False).graph
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2 * 5 + 1 and not [n for n in graph.node if n.op_type == "MatMul"]
    assert all(next(a.i for a in n.attribute if a.name == "bits") == 4 for n in nbits)
    assert built.name == f"int4-{method}" and built.precision == "int4"
    tokens, _ = GenaiRunner(built.path).greedy([1, 2, 3, 4], 4)
    assert len(tokens) >= 1


@pytest.mark.parametrize(("exact", "built", "chosen"), [
    # int4 within the gate: nothing more is built.
    ({"fp32": 0.86, "int4": 0.855}, ["fp32", "int4"], "int4"),
    # int4 fails: the calibrated 4-bit rung and int8 are built; the faster of those that pass is published.
    ({"fp32": 0.86, "int4": 0.83, "int4-gptq": 0.855, "int8": 0.86}, ["fp32", "int4", "int4-gptq", "int8"],
     "int4-gptq"),
    ({"fp32": 0.86, "int4": 0.83, "int4-gptq": 0.84, "int8": 0.86}, ["fp32", "int4", "int4-gptq", "int8"], "int8"),
    ({"fp32": 0.86, "int4": 0.83, "int4-gptq": 0.84, "int8": 0.84}, ["fp32", "int4", "int4-gptq", "int8"], "fp32"),
])
def test_the_ladder_tries_calibrated_4_bit_then_8_bit_when_int4_fails_the_gate(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, exact: dict[str, float], built: list[str],
        chosen: str) -> None:
    """The quantization ladder's logic, with the builders and the measurement stood in for (the int8 and the
    calibrated builds themselves are tested for real)."""
    from tuneship.exporter import InstructExportOptions
    from tuneship.exporter.instruct import export as instruct_export
    from tuneship.exporter.instruct.build import GenaiVariant
    from tuneship.exporter.instruct.measure import GenaiReport

    calls: list[str] = []

    def build(model_dir: Path, workdir: Path, target: str, precision: str, *_: Any) -> GenaiVariant:
        calls.append(precision)
        return GenaiVariant(precision, precision, tmp_path / precision, "cpu")

    def calibrate(fp32: GenaiVariant, workdir: Path, method: str, prompts: Any) -> GenaiVariant:
        assert fp32.name == "fp32" and method == "gptq" and prompts == [[7, 8]]  # beyond the gate's prompts
        calls.append(f"int4-{method}")
        return GenaiVariant(f"int4-{method}", "int4", tmp_path / method, "cpu")

    def measure(variant: GenaiVariant, *_: Any) -> GenaiReport:
        speed = {"fp32": 60.0, "int4": 190.0, "int4-gptq": 185.0, "int8": 130.0}[variant.name]
        return GenaiReport(variant.name, variant.precision, 0, exact_match=exact[variant.name],
                           tokens_per_second=speed, answers=["positive"] * 10)

    monkeypatch.setattr(instruct_export, "build_variant", build)
    monkeypatch.setattr(instruct_export, "build_calibrated", calibrate)
    monkeypatch.setattr(instruct_export, "_measure", measure)
    monkeypatch.setattr(instruct_export, "GenaiRunner", lambda path: None)  # validation against PyTorch: none here
    monkeypatch.setattr("tuneship.trainer.prompt_ids", lambda tokenizer, conversation: conversation)
    export = instruct_export.InstructExport(InstructExportOptions(checkpoint=tmp_path, name="chat"))
    export.check_options()
    export.tokenizer, export.gate, export.answers, export.model_dir = None, [], {"positive", "negative"}, tmp_path
    export.validation, export.calibration = [], [[7, 8]]
    variants = export.build(tmp_path)
    reports = export.measure(variants)
    assert calls == built and [v.name for v in variants] == built == [r.name for r in reports]
    picked, _ = export.choose(reports)
    passing = [r for r in reports if r.passed]
    assert picked.name == max(passing, key=lambda r: r.tokens_per_second).name == chosen


def _pytorch_answer(checkpoint: Path, prompt: str, max_tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False)
    return str(tokenizer.decode(out[0, len(ids):], skip_special_tokens=True))


@pytest.mark.slow
@pytest.mark.integration
def test_streamed_equals_whole_equals_pytorch(server: TritonServer, instruct_checkpoint: Path) -> None:
    messages = [{"role": "user", "content": PROMPT}]
    metrics = ClientMetrics()
    with TritonClient(server.grpc_url, metrics=metrics) as client:
        generator = Generator(client, "chat")
        whole = generator.generate(messages, max_tokens=12)
        stream = generator.stream(messages, max_tokens=12)
        pieces = list(stream)
    assert stream.generation is not None
    assert "".join(pieces) == whole.text == stream.generation.text
    assert whole.text.strip() == _pytorch_answer(instruct_checkpoint, PROMPT, 12).strip()
    assert stream.generation.finish_reason in ("stop", "length") and stream.generation.tokens >= 1
    assert metrics.registry.get_sample_value("tuneship_client_generation_time_to_first_token_seconds_count",
                                             {"model": "chat"}) == 2


@pytest.mark.slow
@pytest.mark.integration
def test_pieces_leave_at_most_every_stream_interval(server: TritonServer) -> None:
    """The first piece at once, then at most one per interval, the rest with the last; 0 is one per token.
    Either way the pieces join to the same answer."""
    messages = [{"role": "user", "content": PROMPT}]

    def pieces(**params: object) -> tuple[list[str], float, str]:
        with TritonClient(server.grpc_url) as client:
            stream = Generator(client, "chat").stream(messages, max_tokens=40, min_tokens=40, **params)
            started = time.monotonic()
            received = list(stream)
            assert stream.generation is not None and stream.generation.tokens == 40
            return [p for p in received if p], time.monotonic() - started, stream.generation.text

    every, _, text = pieces(stream_interval_ms=0)
    coarse, seconds, coarse_text = pieces(stream_interval_ms=1000)
    assert "".join(every) == text == "".join(coarse) == coarse_text
    assert len(every) >= 20  # nearly every token of the tiny model's answer is text of its own
    assert 1 <= len(coarse) <= 2 + int(seconds)
    with TritonClient(server.grpc_url) as client, pytest.raises(InvalidInputError, match="stream_interval_ms"):
        Generator(client, "chat").generate(PROMPT, stream_interval_ms=-5)
    body = json.dumps({"text_input": PROMPT, "parameters": {"max_tokens": 2, "stream_interval_ms": "soon"}})
    request = urllib.request.Request(f"http://{server.http_url}/v2/models/chat/generate", data=body.encode())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400 and "stream_interval_ms must be a number" in refused.value.read().decode()


def test_the_served_generator_config_carries_its_serving_options(generator_repository: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse((generator_repository / "chat" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert config.model_transaction_policy.decoupled
    assert config.parameters["intra_op_threads"].string_value == "2"
    assert config.parameters["max_concurrency"].string_value == "8"
    assert config.parameters["prefix_cache_mb"].string_value == "1024"
    assert config.parameters["stream_interval_ms"].string_value == "50"
    assert {o.name for o in config.output} >= {"prompt_tokens", "cached_prompt_tokens"}


@pytest.mark.slow
@pytest.mark.integration
def test_a_generator_reuses_its_connection_for_the_next_stream(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client, Generator(client, "chat") as generator:
        first = generator.generate(PROMPT, max_tokens=4)
        kept = list(client._idle_streams)
        second = generator.generate(PROMPT, max_tokens=4)
        assert len(kept) == 1 and client._idle_streams == kept  # the same connection served the second stream
        assert first.text == second.text
        stream = generator.stream(PROMPT, max_tokens=200, min_tokens=200)
        next(iter(stream))
        stream.cancel()  # a cancelled stream's connection is not kept
        assert client._idle_streams == []
    assert client._idle_streams == []


@pytest.mark.slow
@pytest.mark.integration
def test_streams_are_tracked_like_any_call_sync_and_async(server: TritonServer) -> None:
    registry = CollectorRegistry()
    metrics = ClientMetrics(registry)
    with TritonClient(server.grpc_url, metrics=metrics) as client:
        responses = list(client.stream_infer("chat", {"text_input": np.array([PROMPT.encode()], dtype=np.object_),
                                                      "max_tokens": np.array([3], dtype=np.int32)},
                                             validate=False))
        assert responses[-1].final and not any(r.final for r in responses[:-1])
        Generator(client, "chat").generate(PROMPT, max_tokens=3)
        stream = Generator(client, "chat").stream(PROMPT, max_tokens=200, min_tokens=200)
        next(iter(stream))
        stream.cancel()

    async def twice() -> None:
        async with AsyncTritonClient(server.grpc_url, metrics=metrics) as client:
            generator = AsyncGenerator(client, "chat")
            await generator.generate(PROMPT, max_tokens=3)
            await generator.generate(PROMPT, max_tokens=3)

    asyncio.run(twice())
    ok = {"model": "chat", "outcome": "ok"}
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_count", ok) == 4
    assert registry.get_sample_value("tuneship_client_request_duration_seconds_count",
                                     {"model": "chat", "outcome": "cancelled"}) == 1
    assert registry.get_sample_value("tuneship_client_generation_time_to_first_token_seconds_count",
                                     {"model": "chat"}) == 3
    assert registry.get_sample_value("tuneship_client_requests_in_flight", {"model": "chat"}) == 0


@pytest.mark.slow
@pytest.mark.integration
def test_triton_generate_endpoints_work_unchanged(server: TritonServer) -> None:
    def post(path: str, body: dict[str, object]) -> str:
        request = urllib.request.Request(f"http://{server.http_url}/v2/models/chat/{path}",
                                         data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=60) as response:
            return str(response.read().decode())

    whole = json.loads(post("generate", {"text_input": PROMPT, "max_tokens": 8}))
    streamed = post("generate_stream", {"text_input": PROMPT, "stream": True, "parameters": {"max_tokens": 8}})
    events = [json.loads(line[len("data: "):]) for line in streamed.splitlines() if line.startswith("data: ")]
    assert "".join(e["text_output"] for e in events) == whole["text_output"]
    assert len(events) >= 2 and events[-1]["finish_reason"] in ("stop", "length")
    # What Triton's OpenAI frontend sends a vLLM-style model: its sampling names, its count outputs.
    frontend = json.loads(post("generate", {
        "text_input": PROMPT, "stream": False, "exclude_input_in_output": True, "return_num_input_tokens": True,
        "return_num_output_tokens": True,
        "sampling_parameters": json.dumps({"max_tokens": 8, "temperature": 0.8, "seed": 5, "stop": ["\n\n\n"]})}))
    again = json.loads(post("generate", {"text_input": PROMPT, "max_tokens": 8, "temperature": 0.8,
                                         "random_seed": 5, "stop": ["\n\n\n"]}))
    assert frontend["text_output"] == again["text_output"]  # `seed` is `random_seed`
    assert frontend["num_output_tokens"] == again["completion_tokens"] >= 1
    assert frontend["num_input_tokens"] == again["prompt_tokens"] > 0
    # A plain prompt to a chat model is one user turn of its template; `raw` reads it as it is.
    raw = json.loads(post("generate", {"text_input": PROMPT, "max_tokens": 8, "raw": True}))
    assert raw["prompt_tokens"] < whole["prompt_tokens"]


@pytest.mark.slow
@pytest.mark.integration
def test_concurrent_streams_are_each_answered_correctly(server: TritonServer) -> None:
    prompts = [PROMPT, "Tell me about films.", "What is a review?", "Hello!"]
    with TritonClient(server.grpc_url) as client:
        expected = [Generator(client, "chat").generate(p, max_tokens=16).text for p in prompts]

    async def streams() -> list[str]:
        async with AsyncTritonClient(server.grpc_url) as client:
            generator = AsyncGenerator(client, "chat")

            async def one(prompt: str) -> str:
                return "".join([piece async for piece in generator.stream(prompt, max_tokens=16)])

            return list(await asyncio.gather(*(one(p) for p in prompts * 2)))

    def batched() -> tuple[float, float]:
        """(decode steps of one row, all decode steps) so far."""
        raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        alone = sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                    if line.startswith("tuneship_generation_batch_size_bucket") and 'le="1"' in line)
        steps = sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                    if line.startswith("tuneship_generation_batch_size_count"))
        return alone, steps

    before = batched()
    assert asyncio.run(streams()) == expected * 2  # each its own greedy answer, alone or in company
    alone, steps = (now - then for now, then in zip(batched(), before, strict=True))
    # Every decode step is counted once, by how many rows it served. How many steps the eight streams shared
    # depends on when each arrived (a busy machine can serialise them), so that is not asserted here: the engine's
    # own tests (tests/test_engine.py) show rows sharing steps with their arrival fixed.
    assert 15 <= steps <= 8 * 16 and 0 <= alone <= steps


@pytest.mark.slow
@pytest.mark.integration
def test_a_cancelled_stream_stops_generating(server: TritonServer) -> None:
    def cancelled() -> float:
        raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                   if line.startswith("tuneship_generation_requests_total") and 'finish_reason="cancelled"' in line)

    before = cancelled()
    with TritonClient(server.grpc_url) as client:
        stream = Generator(client, "chat").stream(PROMPT, max_tokens=2000, min_tokens=2000, stop=None)
        received = []
        for piece in stream:
            received.append(piece)
            if len(received) == 2:
                stream.cancel()
                break
    wait_for(lambda: cancelled() > before, "the cancelled stream counted")
    assert cancelled() == before + 1
    # And the server is free for the next caller.
    with TritonClient(server.grpc_url) as client:
        assert Generator(client, "chat").generate(PROMPT, max_tokens=4).tokens >= 1


@pytest.mark.slow
@pytest.mark.integration
def test_bad_generation_requests_are_refused(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "chat")
        with pytest.raises(InvalidInputError, match="max_tokens must be at least 1"):
            generator.generate(PROMPT, max_tokens=0)
        with pytest.raises(InvalidInputError, match="the prompt is empty"):
            generator.generate("  ")
        with pytest.raises(InvalidInputError, match="messages must be"):
            generator.generate([{"role": "robot", "content": "x"}])
        with pytest.raises(InvalidInputError, match="session: session_id must be a non-empty string of at most 128"):
            generator.generate(PROMPT, session="s" * 129)
    # The server says the same to a caller that skips the client's checks.
    for parameters, message in (({"session_id": "s" * 129}, "session_id must be a non-empty string"),
                                ({"top_k": 0}, "top_k must be at least 1, got 0")):
        body = json.dumps({"text_input": PROMPT, "parameters": {"max_tokens": 2, **parameters}})
        request = urllib.request.Request(f"http://{server.http_url}/v2/models/chat/generate", data=body.encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400 and message in refused.value.read().decode()
    # And the client refuses it before sending, with the same words.
    with TritonClient(server.grpc_url) as client, pytest.raises(InvalidInputError, match="top_k must be at least 1"):
        Generator(client, "chat").generate(PROMPT, top_k=0)


def test_classifier_commands_refuse_a_generator_by_its_task(server: TritonServer,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    assert main(["infer", "--url", server.grpc_url, "--model", "chat", "hello"]) == 2
    assert "model 'chat' is not a classifier (text generation" in capsys.readouterr().err
    assert main(["bench", "--url", server.grpc_url, "--model", "chat", "--batch-size", "4"]) == 2
    assert "--batch-size: not an option for a generator (model 'chat')" in capsys.readouterr().err


def test_bench_streams_a_generator_at_each_level(server: TritonServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    prefix = tmp_path / "gen"
    assert main(["bench", "--url", server.grpc_url, "--model", "chat", "--concurrency", "1,3", "--max-tokens", "6",
                 "--streams", "2", "--stream-interval-ms", "0", "--output", str(prefix)]) == 0
    levels = json.loads(prefix.with_suffix(".json").read_text())["chat"]
    assert [level["concurrency"] for level in levels] == [1, 3]
    # Every answer is exactly --max-tokens long (min = max), so aggregate tokens are streams x tokens.
    assert [level["streams"] for level in levels] == [2, 6] and all(level["errors"] == 0 for level in levels)
    for level in levels:
        assert level["aggregate_tokens_per_second"] == pytest.approx(level["streams"] * 6 / level["seconds"],
                                                                     rel=0.02)
        assert 0 < level["ttft_p50_ms"] <= level["ttft_p99_ms"] <= level["ttft_max_ms"]
        assert 0 < level["itl_p50_ms"] <= level["itl_p99_ms"]
    assert prefix.with_suffix(".png").stat().st_size > 10_000
    assert "TTFT p50" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.integration
def test_health_and_healing_work_for_a_streaming_model(server: TritonServer) -> None:
    """Last in this module: it kills the generator's stub. The liveness check streams (a decoupled model takes
    no plain inference), and the watcher notices the dead stub with a streamed probe and reloads the model."""
    import os
    import signal
    import subprocess
    import sys

    from tuneship.deploy.stubs import list_stubs

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tuneship", "health", "--url", server.grpc_url, "--model", "chat"],
                              capture_output=True, text=True, timeout=60)

    healthy = health()
    assert healthy.returncode == 0 and "healthy: chat" in healthy.stdout, healthy.stderr
    assert server.pid is not None
    (victim,) = [stub.pid for stub in list_stubs(server.pid) if stub.model == "chat"]
    os.kill(victim, signal.SIGKILL)

    def answers() -> bool:
        with TritonClient(server.grpc_url) as client:
            try:
                return Generator(client, "chat").generate(PROMPT, max_tokens=4, timeout_s=5).tokens >= 1
            except Exception:
                return False

    wait_for(answers, "the generator back after its stub was killed", timeout_s=90, interval_s=0.5)
    assert server.watcher is not None and server.watcher.heals >= 1
    assert health().returncode == 0


@pytest.mark.slow
@pytest.mark.integration
def test_constrained_answers_keep_to_their_choice_pattern_or_schema(server: TritonServer) -> None:
    """The tiny model answers noise; the engine's grammar guidance keeps every answer inside its constraint."""
    import re

    schema = {"type": "object", "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                                               "stars": {"type": "integer", "minimum": 1, "maximum": 5}},
              "required": ["sentiment", "stars"], "additionalProperties": False}
    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "chat")
        free = generator.generate(PROMPT, max_tokens=8).text
        chosen = generator.generate(PROMPT, max_tokens=8, choices=["positive", "negative"]).text
        assert chosen in ("positive", "negative") and free not in ("positive", "negative")
        assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", generator.generate(PROMPT, max_tokens=12, regex=r"[0-9]{3}-[a-z]{2}")
                            .text)
        shaped = generator.generate(PROMPT, max_tokens=200, json_schema=schema)
        assert shaped.finish_reason == "stop", shaped.text  # the grammar ended the answer, not max_tokens
        answer = json.loads(shaped.text)
        assert set(answer) == {"sentiment", "stars"} and answer["sentiment"] in ("positive", "negative")
        assert isinstance(answer["stars"], int)
        # Sampled answers keep to it too, streamed as well.
        stream = generator.stream(PROMPT, max_tokens=8, temperature=1.0, seed=3, choices=["yes", "no"])
        assert "".join(stream) in ("yes", "no")


@pytest.mark.slow
@pytest.mark.integration
def test_tuneship_generate_takes_the_constraints(server: TritonServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    url = ["--url", server.grpc_url, "--model", "chat", "--max-tokens", "40"]
    assert main(["generate", *url, "--choice", "yes", "--choice", "no", PROMPT]) == 0
    assert capsys.readouterr().out.strip() in ("yes", "no")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                                  "additionalProperties": False}))
    assert main(["generate", *url, "--json-schema", f"@{schema}", PROMPT]) == 0
    assert json.loads(capsys.readouterr().out.strip()) in ({"ok": True}, {"ok": False})
    with pytest.raises(SystemExit):
        main(["generate", *url, "--json-schema", "{oops", PROMPT])
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.integration
def test_a_malformed_constraint_is_refused_naming_it(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "chat")
        with pytest.raises(InvalidInputError, match=r"guided_regex: cannot be applied: .*unclosed"):
            generator.generate(PROMPT, max_tokens=4, regex="(unclosed")
        with pytest.raises(InvalidInputError, match="one constraint per request, not guided_choice and guided_regex"):
            generator.generate(PROMPT, choices=["a"], regex="a")
        with pytest.raises(InvalidInputError, match="choices: guided_choice must be a non-empty list"):
            generator.generate(PROMPT, choices=[])
        # The server says the same to a caller that skips the client's checks (Triton's generate endpoint).
        body = json.dumps({"text_input": PROMPT, "parameters": {"max_tokens": 4, "guided_json": "{not json"}})
        request = urllib.request.Request(f"http://{server.http_url}/v2/models/chat/generate", data=body.encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 400 and "guided_json is not valid JSON" in refused.value.read().decode()


@pytest.mark.slow
@pytest.mark.integration
def test_a_sessions_follow_up_turn_reports_the_prompt_it_did_not_prefill(server: TritonServer,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tuneship.cli import main

    def cached_total() -> float:
        raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                   if line.startswith("tuneship_generation_cached_prompt_tokens_total{"))

    before = cached_total()
    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "chat")
        conversation = [{"role": "user", "content": PROMPT}]
        first = generator.generate(conversation, max_tokens=6, session="review-1")
        assert first.prompt_tokens is not None and first.cached_prompt_tokens is not None
        # Only the chat template's opening (the same for every request) came from a cache.
        assert 0 < first.cached_prompt_tokens < first.prompt_tokens
        conversation += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "Why?"}]
        second = generator.generate(conversation, max_tokens=6, session="review-1")
        assert second.prompt_tokens is not None and second.cached_prompt_tokens is not None
        # The first turn was kept: its prompt is not prefilled again (but for its last token, the newline after
        # the assistant marker, which the template's rendering of the answer may tokenize with what follows).
        assert second.cached_prompt_tokens >= first.prompt_tokens - 1
        assert second.text == generator.generate(conversation, max_tokens=6).text  # the same answer without it
        # The prefix cache is automatic: any request starting with those tokens reuses them, session or not...
        other = generator.generate(conversation, max_tokens=6, session="someone-else")
        assert other.prompt_tokens is not None and other.cached_prompt_tokens == other.prompt_tokens - 1
        # ...unless its cache salt differs (a tenant's prompts cannot be probed by another's first-token time).
        salted = generator.generate(conversation, max_tokens=6, cache_salt="tenant-b")
        assert salted.cached_prompt_tokens == 0 and salted.text == second.text
    wait_for(lambda: cached_total() >= before + first.cached_prompt_tokens + second.cached_prompt_tokens,
             "the cached prompt tokens counted")
    assert cached_total() >= before + first.cached_prompt_tokens + second.cached_prompt_tokens
    assert main(["generate", "--url", server.grpc_url, "--max-tokens", "3", "--session", "cli-1", "--stats",
                 PROMPT]) == 0
    assert "from cache" in capsys.readouterr().err


@pytest.mark.slow
def test_the_continuous_batch_answers_as_each_request_alone(generator_repository: Path) -> None:
    """In process: 6 requests through 3 slots (rows leave and others take their
    place mid-batch) each get the greedy tokens onnxruntime-genai's own generator gives it alone."""
    import threading

    import onnxruntime_genai as og

    from tuneship.serving import Engine, Request, SamplingParams

    folder = generator_repository / "chat" / "1"

    model = og.Model(str(folder))
    tokenizer = og.Tokenizer(model)
    prompts = [list(tokenizer.encode(f"{word} films are")) for word in ("Good", "Long", "Old", "Silent", "Sad", "New")]
    lengths = [5, 30, 12, 3, 20, 9]
    alone = [greedy_alone(model, prompt, count) for prompt, count in zip(prompts, lengths, strict=True)]
    batcher = Engine(str(folder), slots=3, threads=2, capacity=16, prefix_cache_bytes=0)  # grows as needed
    got: dict[int, list[int]] = {}
    reasons: dict[int, str] = {}
    done = threading.Semaphore(0)

    def sequence(i: int, stop_after: int | None = None) -> Request:
        got[i] = []

        def on_token(token: int) -> bool:
            got[i].append(token)
            return stop_after is None or len(got[i]) < stop_after

        def on_finish(reason: str, error: BaseException | None) -> None:
            assert error is None
            reasons[i] = reason
            done.release()

        return Request(prompts[i % 6], SamplingParams(max_tokens=lengths[i % 6], min_tokens=lengths[i % 6]),
                       on_token, on_finish)

    try:
        # All queued before the loop looks (its lock is reentrant): the first three share steps, and the others
        # take the slots that rows leave mid-batch. (Submitted 10 ms apart, the tiny model could finish each
        # before the next arrived.)
        with batcher.condition:
            for i in range(6):
                batcher.submit(sequence(i))
            batcher.submit(sequence(6, stop_after=2))  # its caller stops it: its slot frees at once
        for _ in range(7):
            assert done.acquire(timeout=60)
    finally:
        batcher.close()
    assert [got[i] for i in range(6)] == alone
    assert reasons[6] == "stop" and len(got[6]) == 2 and got[6] == alone[0][:2]
    assert max(batcher.batch_sizes) >= 2 and batcher.capacity >= 16  # rows shared steps (how many: timing)


@pytest.mark.slow
@pytest.mark.integration
def test_answers_are_measured_by_length_and_failed_constraints_are_counted(server: TritonServer) -> None:
    """What the answers are like: each finished answer's length in tokens, and a constraint the model's tokens
    cannot follow counted by its kind (a cancelled stream adds no length)."""
    def value(name: str, *labels: str) -> float:
        raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                   if line.startswith(name) and 'model="chat"' in line and all(label in line for label in labels))

    answers_before = value("tuneship_generation_answer_tokens_count")
    tokens_before = value("tuneship_generation_answer_tokens_sum")
    failed_before = value("tuneship_generation_constraint_failures_total", 'constraint="guided_regex"')
    constrained_before = value("tuneship_generation_constrained_requests_total", 'constraint="guided_regex"')
    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "chat")
        lengths = [generator.generate(PROMPT, max_tokens=n, min_tokens=n).tokens for n in (3, 5, 9)]
        stream = generator.stream(PROMPT, max_tokens=2000, min_tokens=2000)
        next(iter(stream))
        stream.cancel()
        with pytest.raises(InvalidInputError, match="guided_regex: this model's tokens cannot continue"):
            generator.generate(PROMPT, max_tokens=8, regex="[^\\x00-\\U0010FFFF]")
    assert lengths == [3, 5, 9]
    wait_for(lambda: value("tuneship_generation_constraint_failures_total", 'constraint="guided_regex"')
             != failed_before, "the failed constraint counted")
    assert value("tuneship_generation_answer_tokens_count") - answers_before == 3
    assert value("tuneship_generation_answer_tokens_sum") - tokens_before == sum(lengths)
    assert value("tuneship_generation_constrained_requests_total", 'constraint="guided_regex"') \
        - constrained_before == 1


@pytest.mark.slow
@pytest.mark.integration
def test_a_closed_set_models_answers_are_counted_by_label(server: TritonServer, generator_repository: Path) -> None:
    """The checkpoint answers from {negative, positive}: the export writes them as labels.txt, and the served model
    counts every finished answer by its first word, 'other' outside the set."""
    latest = max(int(p.name) for p in (generator_repository / "chat").iterdir() if p.name.isdigit())
    assert (generator_repository / "chat" / str(latest) / "labels.txt").read_text().split() == ["negative", "positive"]

    def counts() -> dict[str, float]:
        raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        found: dict[str, float] = {}
        for line in raw.splitlines():
            if line.startswith("tuneship_generation_answers_total{") and 'model="chat"' in line:
                label = line.split('label="', 1)[1].split('"', 1)[0]
                found[label] = found.get(label, 0.0) + float(line.rsplit(" ", 1)[1])
        return found

    before = counts()
    with TritonClient(server.grpc_url) as client:
        generator = Generator(client, "chat")
        chosen = [generator.generate(PROMPT, max_tokens=4, choices=["Positive!", "negative"]).text for _ in range(2)]
        free = generator.generate(PROMPT, max_tokens=6, min_tokens=6).text
    expected = {"negative": 0.0, "positive": 0.0, "other": 0.0}
    for text in [*chosen, free]:
        word = re.findall(r"[a-z0-9]+", text.lower())
        expected[word[0] if word and word[0] in ("negative", "positive") else "other"] += 1
    wait_for(lambda: sum(counts().values()) - sum(before.values()) >= 3, "the three answers counted")
    after = counts()
    assert {label: after.get(label, 0.0) - before.get(label, 0.0) for label in expected} == expected


@pytest.mark.slow
@pytest.mark.integration
def test_a_version_serves_its_reference_and_a_probe_is_not_counted(server: TritonServer,
                                                                   generator_repository: Path) -> None:
    """The export records the version's held-out answers (reference.json) as served with the default max_tokens;
    the served model publishes those shares as gauges beside its live answers by length bin, and a liveness
    probe (what `tuneship health` and the healer send) is answered without being counted."""
    from tuneship.client import generation_probe, stream_once

    latest = max(int(p.name) for p in (generator_repository / "chat").iterdir() if p.name.isdigit())
    reference = json.loads((generator_repository / "chat" / str(latest) / "reference.json").read_text())
    assert reference["prompts"] == 8 and reference["max_tokens"] == 256
    for table in ("finish_share", "length_share", "label_share"):
        assert abs(sum(reference[table].values()) - 1) < 1e-4, table
    assert set(reference["label_share"]) == {"negative", "positive", "other"}
    assert 0 <= reference["exact_match"] <= 1

    def samples(name: str) -> dict[str, float]:
        raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
        found: dict[str, float] = {}
        for line in raw.splitlines():
            if line.startswith(name + "{") and 'model="chat"' in line and "adapter=" not in line:
                key = line.split("{", 1)[1].rsplit("}", 1)[0]
                found[key] = found.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return found

    def by(label: str, table: dict[str, float]) -> dict[str, float]:
        return {key.split(f'{label}="', 1)[1].split('"', 1)[0]: value for key, value in table.items()}

    served = by("bin", samples("tuneship_generation_reference_length_share"))
    assert served == pytest.approx({k: v for k, v in reference["length_share"].items()}, abs=1e-6)
    assert by("label", samples("tuneship_generation_reference_label_share")) == pytest.approx(
        reference["label_share"], abs=1e-6)
    assert list(samples("tuneship_generation_reference_exact_match").values()) == pytest.approx(
        [reference["exact_match"]])

    before_bins = by("bin", samples("tuneship_generation_answer_length_total"))
    before_requests = sum(samples("tuneship_generation_requests_total").values())
    with TritonClient(server.grpc_url) as client:
        probe = generation_probe(client.get_model_metadata("chat"), "a probe of the model")
        assert probe is not None
        stream_once(client, "chat", probe, 30)  # first: its counts would be sent before the answer's
        assert Generator(client, "chat").generate(PROMPT, max_tokens=5, min_tokens=5).tokens == 5
    wait_for(lambda: sum(samples("tuneship_generation_requests_total").values()) != before_requests,
             "the answer counted")
    wait_for(lambda: by("bin", samples("tuneship_generation_answer_length_total")) != before_bins,
             "the answer's length counted")
    after_bins = by("bin", samples("tuneship_generation_answer_length_total"))
    assert {k: after_bins[k] - before_bins.get(k, 0.0) for k in after_bins if after_bins[k] != before_bins.get(k)} \
        == {"4": 1.0}  # 5 tokens: the bin from 4; the probe's one token (bin 1) not counted
    assert sum(samples("tuneship_generation_requests_total").values()) - before_requests == 1
