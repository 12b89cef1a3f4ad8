"""Every subcommand, given wrong input, answers with one clear line and exit status 2, never a traceback.

The battery runs against a real Triton server where a command needs one, so that "unknown model" and
"server unreachable" are the server's real answers. A new subcommand must join the battery (the last test).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator

import pytest

from tuneship.cli import build_parser, main
from tuneship.deploy import TritonServer, free_port

# Placeholders filled per run: {grpc} and {metrics} of the running server, {dead} a port nothing listens on,
# {tmp} a scratch directory, {file} a file that exists (where a directory or another kind of file is expected).
BATTERY: dict[str, list[list[str]]] = {
    "train": [
        ["--data", "{tmp}/missing.csv"],
        ["--data", "{tmp}/nolabel.csv"],
        ["--data", "{tmp}/nolabel.csv", "--label-column", "stars"],
        ["--batch-size", "0"],
        ["--epochs", "many"],
        ["--method", "magic"],
        ["--recipe", "{tmp}/missing.yaml"],
        ["--recipe", "{file}"],
        ["--task", "image-classification", "--data", "{tmp}/no-images"],
        ["--task", "image-classification", "--model", "resnet999"],
        ["--task", "image-classification", "--image-size", "8"],
        ["--task", "image-classification", "--method", "prompt-tuning"],
    ],
    "evaluate": [
        ["{tmp}/no-checkpoint", "--data", "{tmp}/nolabel.csv"],
        ["{tmp}", "--data", "{tmp}/nolabel.csv"],
        ["{tmp}", "--data", "x.csv", "--batch-size", "-5"],
    ],
    "export": [
        ["{tmp}/no-checkpoint"],
        ["{tmp}"],
        ["{tmp}", "--keep", "0"],
        ["{tmp}", "--precision", "int3"],
        ["{tmp}", "--max-batch-size", "-1"],
        ["{tmp}", "--layout", "stacked"],
    ],
    "adapters": [
        ["chat", "--repository", "{tmp}/no-repository"],
        ["chat", "--repository", "{tmp}", "--remove", "support"],
    ],
    "serve": [
        ["--model-repository", "{tmp}/no-repository"],
        ["--model-repository", "{file}"],
        ["--grpc-port", "70000"],
        ["--ready-timeout", "-1"],
        ["--model-repository", "{tmp}", "--openai-port", "70000"],
        ["--model-repository", "{tmp}", "--openai-port", "0", "--api-tls-cert", "{file}"],
    ],
    "api": [
        ["--api-port", "70000"],
        ["--url", "http://"],
        ["--api-tls-cert", "{tmp}/missing.pem"],
        ["--api-tls-cert", "{file}"],
        ["--max-body-bytes", "0"],
        ["--request-timeout", "-3"],
    ],
    "infer": [
        ["--url", "{grpc}", "--root-cert", "/nonexistent.pem", "hello"],
        ["--url", "{grpc}", "--batch-size", "0", "hello"],
        ["--url", "{grpc}", "--batch-size", "-5", "hello"],
        ["--url", "{grpc}", "--model", "nope", "hello"],
        ["--url", "127.0.0.1:{dead}", "hello"],
        ["--url", "127.0.0.1:{dead}", "--wait", "1", "hello"],
        ["--url", "127.0.0.1:notaport", "hello"],
        ["--url", "{grpc}", "--header", "no-equals-sign", "hello"],
        ["--url", "{grpc}", "--timeout", "0", "hello"],
        ["--url", "{grpc}", "--client-key", "{tmp}/none.key", "hello"],
        ["--url", "{grpc}", "STDIN:not utf-8 \xff here"],
        ["--url", "{grpc}", "STDIN:"],
    ],
    "generate": [
        ["--url", "{grpc}", "--max-tokens", "0", "hello"],
        ["--url", "{grpc}", "--temperature", "-1", "hello"],
        ["--url", "{grpc}", "--model", "nope", "hello"],
        ["--url", "127.0.0.1:{dead}", "hello"],
        ["--url", "{grpc}", "STDIN:   "],
    ],
    "chat": [
        ["--url", "{grpc}", "--top-p", "0"],
        ["--url", "127.0.0.1:notaport"],
    ],
    "health": [
        ["--url", "{grpc}", "--timeout", "0"],
        ["--url", "127.0.0.1:notaport"],
        ["--url", "{grpc}", "--root-cert", "/nonexistent.pem"],
    ],
    "bench": [
        ["--url", "{grpc}", "--concurrency", "0"],
        ["--url", "{grpc}", "--concurrency", "two"],
        ["--url", "{grpc}", "--texts", "{tmp}/missing.txt"],
        ["--url", "{grpc}", "--model", "nope", "--concurrency", "1", "--window", "0.2"],
        ["--url", "127.0.0.1:{dead}", "--concurrency", "1", "--timeout", "2"],
        ["--url", "{grpc}", "--batch-size", "0"],
    ],
    "data": [
        ["check", "--output", "{tmp}/check", "--data", "{tmp}/missing.csv"],
        ["check", "--output", "{tmp}/check", "--data", "{tmp}/nolabel.csv"],
        ["check", "--output", "{tmp}/check", "--task", "image-classification"],
        ["check", "--output", "{tmp}/check", "--task", "instruct", "--data", "{tmp}/missing.jsonl"],
        ["check", "--output", "{tmp}/check", "--task", "instruct", "--data", "{tmp}/missing.jsonl", "--fine-tune"],
        ["check", "--output", "{tmp}/check", "--folds", "1"],
    ],
    "search": [
        ["--output", "{tmp}/search", "--data", "{tmp}/missing.csv"],
        ["--output", "{tmp}/search", "--trials", "0"],
        ["--output", "{tmp}/search", "--space", "{tmp}/missing.yaml"],
        ["--output", "{tmp}/search", "--publish-from", "{tmp}/no-search"],
        ["--output", "{tmp}/search", "--task", "instruct", "--layers", "3"],
    ],
    "tune": [
        ["--model", "tiny", "--latency-budget-ms", "0"],
        ["--model", "tiny", "--latency-budget-ms", "10", "--model-repository", "{tmp}/no-repository"],
        ["--model", "tiny", "--latency-budget-ms", "10", "--queue-delays-us", "soon"],
        ["--model", "tiny", "--latency-budget-ms", "10", "--instance-counts", "0,1"],
        ["--latency-budget-ms", "10"],
    ],
    "metrics": [
        ["--url", "{metrics}", "--model", "nope"],
        ["--url", "{metrics}", "--model", "a,b"],
        ["--url", "{metrics}", "--model", "tiny,"],
        ["--url", "127.0.0.1:{dead}"],
        ["--url", "ftp://127.0.0.1:{dead}"],
        ["--url", "{grpc_http}"],
    ],
    "deploy": [
        ["status", "--url", "127.0.0.1:{dead}"],
        ["load", "nope", "--url", "{grpc}"],
        ["unload", "--url", "{grpc}"],
        ["publish", "{tmp}/no-checkpoint", "--url", "{grpc}"],
        ["publish", "{tmp}", "--url", "{grpc}", "--keep", "0"],
        ["frobnicate"],
    ],
    "feedback": [
        ["import", "{tmp}/missing.csv", "--model", "tiny", "--store", "{tmp}/feedback.db"],
        ["import", "{tmp}/nolabel.csv", "--model", "tiny", "--store", "{tmp}/feedback.db"],
        ["import", "{file}", "--store", "{tmp}/feedback.db"],
        ["export", "--model", "tiny", "--out", "{tmp}/labelled.jsonl", "--store", "{tmp}/empty.db"],
        ["stats", "--store", "nosuchdb://somewhere/db"],
        ["stats", "--store", "{tmp}/feedback.db", "--window-hours", "0"],
    ],
    "update": [
        ["{tmp}/missing.csv", "--model", "tiny", "--output", "{tmp}/candidate"],
        ["{file}", "--model", "tiny", "--output", "{tmp}/candidate", "--repository", "{tmp}/no-repository"],
        ["{file}", "--model", "tiny", "--output", "{tmp}/candidate", "--holdout-fraction", "1.5"],
        ["{file}", "--model", "tiny", "--output", "{tmp}/candidate", "--margin", "-1"],
        ["{file}", "--output", "{tmp}/candidate"],
    ],
    "rollback": [
        ["--model", "tiny", "--repository", "{tmp}/no-repository"],
        ["--model", "tiny", "--repository", "{tmp}", "--to", "0"],
    ],
    "monitor": [
        ["serve", "--store", "{tmp}/feedback.db", "--port", "70000"],
        ["serve", "--store", "{tmp}/feedback.db", "--port", "{busy}"],
        ["frobnicate"],
    ],
}


@pytest.fixture(scope="module")
def server(tiny_server: TritonServer) -> TritonServer:
    return tiny_server  # the session's shared server on the `tiny` repository


@pytest.fixture(scope="module")
def places(server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "nolabel.csv").write_text("text\nhello\n", encoding="utf-8")
    (tmp / "file.txt").write_text("not a directory\n", encoding="utf-8")
    return {"grpc": server.grpc_url, "metrics": server.metrics_url, "dead": str(free_port()), "tmp": str(tmp),
            "file": str(tmp / "file.txt"), "grpc_http": server.http_url.replace("http://", ""),
            "busy": server.grpc_url.rsplit(":", 1)[1]}


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    stdin = b""
    if argv and argv[-1].startswith("STDIN:"):
        stdin = argv.pop().removeprefix("STDIN:").encode("latin-1")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code if isinstance(stop.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out + captured.err


CASES = [(command, args) for command, battery in BATTERY.items() for args in battery]


@pytest.mark.parametrize(("command", "args"), CASES, ids=[f"{c}:{' '.join(a)}" for c, a in CASES])
def test_wrong_input_gives_one_clear_line_and_status_2(command: str, args: list[str], places: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command] + [arg.format(**places) for arg in args]
    code, output = _run(argv, monkeypatch, capsys)
    assert code == 2, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1, output
    assert len(errors[0]) > len("error: ") + 10, output


def test_the_messages_say_what_to_do(places: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def error_of(*argv: str) -> str:
        code, output = _run([a.format(**places) for a in argv], monkeypatch, capsys)
        assert code == 2, output
        return output

    unreachable = error_of("infer", "--url", "127.0.0.1:{dead}", "hi")
    assert "cannot reach Triton" in unreachable and "tuneship serve" in unreachable and "--url" in unreachable
    waited = error_of("infer", "--url", "127.0.0.1:{dead}", "--wait", "1", "hi")
    assert "unreachable" in waited and "not ready" not in waited
    unknown = error_of("infer", "--url", "{grpc}", "--model", "nope", "hi")
    assert "'nope'" in unknown and "tiny" in unknown and "tiny_postprocess" in unknown  # the models it does have
    metrics_unknown = error_of("metrics", "--url", "{metrics}", "--model", "tiny,nope")
    assert "'nope'" in metrics_unknown and "tiny_model" in metrics_unknown
    assert "tuneship serve" in error_of("metrics", "--url", "127.0.0.1:{dead}")
    assert "line 1" in error_of("infer", "--url", "{grpc}", "STDIN:caf\xe9 au lait")


def test_one_address_form_everywhere(server: TritonServer, places: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    host_port = server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    for url in (host_port, f"http://{host_port}", server.metrics_url):
        code, output = _run(["metrics", "--url", url, "--model", "tiny,tiny_model"], monkeypatch, capsys)
        assert code == 0, output
        assert [line.split()[0] for line in output.splitlines()[1:]] == ["tiny", "tiny_model"]
    for url in (places["grpc"], f"grpc://{places['grpc']}", f"http://{places['grpc']}"):
        code, output = _run(["infer", "--url", url, "--model", "tiny", "a superb and moving film"],
                            monkeypatch, capsys)
        assert code == 0, output
        assert output.split()[0] in ("positive", "negative")


def test_every_subcommand_is_in_the_battery() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    missing = sorted(set(commands) - set(BATTERY))
    assert not missing, f"add wrong-argument cases for {missing} to BATTERY"


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        yield prefix.strip(), parser
    for action in nested:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, f"{prefix} {name}")


def test_every_help_shows_defaults_once() -> None:
    leaves = dict(_leaf_parsers(build_parser()))
    assert {"train", "export", "serve", "infer", "bench", "metrics", "deploy publish"} <= set(leaves)
    for name, parser in leaves.items():
        text = " ".join(parser.format_help().split())
        assert "(default:" in text, name
        for option in text.split(" -")[1:]:
            assert option.count("(default:") <= 1, f"{name}: {option}"
