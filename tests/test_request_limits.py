"""A shared server against careless and hostile callers: bad requests fail alone, work per request is bounded,
outputs are numbers or errors. Against the real embedded Triton server."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from tuneship.client import InvalidInputError, ServerError, TextClassifier, TritonClient, TritonError
from tuneship.deploy import TritonServer
from tuneship.deploy.onnxruntime_bridge.input_limits import InputLimits, check_request, read_limits

VALID_TEXTS = ["a superb and moving film", "dull, tedious and lifeless", "the cast was charming"]


@pytest.fixture(scope="module")
def server(tiny_server: TritonServer) -> TritonServer:
    return tiny_server  # the session's shared server on the `tiny` repository


def _tokens(client: TritonClient, text: str) -> dict[str, np.ndarray]:
    result = client.infer("tiny_tokenizer", {"TEXT": np.array([[text.encode()]], dtype=np.object_)})
    return {name: np.asarray(result[name]) for name in ("input_ids", "attention_mask", "token_type_ids")
            if name in result.outputs}


def test_limits_are_read_from_the_models_own_tables(tiny_repository: Path) -> None:
    (path,) = sorted((tiny_repository / "tiny_model").glob("*/model.onnx"))[-1:]
    limits = read_limits(str(path), ["input_ids", "attention_mask", "token_type_ids"])
    assert limits.upper["input_ids"] == 30522  # the MiniLM vocabulary of the tiny test BERT
    assert limits.upper["token_type_ids"] == 2
    assert "attention_mask" not in limits.upper
    assert limits.max_length == 128  # its position table


@pytest.mark.parametrize(("ids", "message"), [
    ([[101, 30522, 102]], "holds 30522, outside the model's table of 30522 entries"),
    ([[101, -1, 102]], "holds -1"),
    ([[101, 2**32 + 5, 102]], f"holds {2**32 + 5}"),  # would become token 5 after the int32 cast
    ([[101] * 129], "holds 129 tokens per row; the model's position table has 128"),
])
def test_check_request_names_the_input_and_the_limit(ids: list[list[int]], message: str) -> None:
    limits = InputLimits(upper={"input_ids": 30522}, max_length=128)
    problem = check_request({"input_ids": np.array(ids, dtype=np.int64)}, limits, batched=True)
    assert problem is not None and message in problem and "'input_ids'" in problem
    assert check_request({"input_ids": np.array([[101, 2000, 102]], dtype=np.int64)}, limits, batched=True) is None


def test_bad_requests_fail_alone_while_valid_callers_all_succeed(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client:
        good = _tokens(client, "the cast was charming and the story moving")
        expected = np.asarray(client.infer("tiny_model", good)["logits"])
    length = good["input_ids"].shape[1]
    bad_ids = [999999, -1, 30522, 2**32 + 5, 2**31 + 7]
    failures: list[str] = []
    bad_errors: list[BaseException] = []
    wrong_answers: list[float] = []
    lock = threading.Lock()

    def valid_direct() -> None:
        with TritonClient(server.grpc_url) as client:
            for _ in range(40):
                try:
                    logits = np.asarray(client.infer("tiny_model", good, validate=False)["logits"])
                except TritonError as error:
                    with lock:
                        failures.append(str(error))
                    continue
                if not np.allclose(logits, expected, atol=1e-5):
                    with lock:
                        wrong_answers.append(float(np.abs(logits - expected).max()))

    def valid_ensemble() -> None:
        with TritonClient(server.grpc_url) as client:
            classifier = TextClassifier(client, "tiny", batch_size=3, concurrency=1)
            for _ in range(25):
                try:
                    assert len(classifier.classify(VALID_TEXTS)) == 3
                except TritonError as error:
                    with lock:
                        failures.append(str(error))

    def bad_caller(kind: int) -> None:
        with TritonClient(server.grpc_url) as client:
            for round_ in range(40):
                feeds = {name: array.copy() for name, array in good.items()}
                if kind == 0:
                    feeds["input_ids"][0, 1] = bad_ids[round_ % len(bad_ids)]
                elif kind == 1:
                    feeds["token_type_ids"][0, 1] = 7  # the table has 2 rows
                else:  # a sequence past the position table, sent as the same-shaped batch-mates would be
                    feeds = {name: np.ones((1, 129), dtype=np.int64) for name in good}
                try:
                    client.infer("tiny_model", feeds, validate=False)
                except TritonError as error:
                    with lock:
                        bad_errors.append(error)
                else:
                    with lock:
                        failures.append(f"bad request of kind {kind} round {round_} was answered")

    threads = [threading.Thread(target=valid_direct) for _ in range(3)]
    threads += [threading.Thread(target=valid_ensemble) for _ in range(2)]
    threads += [threading.Thread(target=bad_caller, args=(kind,)) for kind in (0, 0, 1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures[:5]
    assert not wrong_answers, wrong_answers[:5]
    assert len(bad_errors) == 160
    assert all(isinstance(error, InvalidInputError) for error in bad_errors), {type(e) for e in bad_errors}
    messages = {str(error) for error in bad_errors}
    assert any("'token_type_ids' holds 7" in m and "2 entries" in m for m in messages)
    assert any(f"holds {2**32 + 5}" in m for m in messages)
    assert any("position table has 128" in m for m in messages)
    del length


def test_empty_and_oversized_texts_are_refused_with_a_clear_error(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client:
        def ensemble(*texts: str) -> None:
            client.infer("tiny", {"TEXT": np.array([[t.encode()] for t in texts], dtype=np.object_)},
                         validate=False)

        for empty in ("", "   \n\t"):
            with pytest.raises(InvalidInputError, match="empty or only whitespace"):
                ensemble("a fine film", empty)
        limit = 32 * 128  # the tiny checkpoint's max length is 32 tokens
        with pytest.raises(InvalidInputError, match=f"over this model's limit of {limit}"):
            ensemble("great " * (limit // 6 + 10))
        ensemble("great " * (limit // 6 - 10))  # just under the limit: answered (the tokenizer truncates it)
        with pytest.raises(InvalidInputError, match="empty or only whitespace"):
            TextClassifier(client, "tiny").classify(["fine", " "])


def test_non_finite_logits_give_an_error_not_a_label(server: TritonServer) -> None:
    with TritonClient(server.grpc_url) as client:
        for bad in (np.nan, np.inf, -np.inf):
            with pytest.raises(ServerError, match="non-finite logits"):
                client.infer("tiny_postprocess", {"logits": np.array([[bad, 1.0]], dtype=np.float32)})
        result = client.infer("tiny_postprocess", {"logits": np.array([[0.0, 1.0]], dtype=np.float32)})
        assert result.strings("LABEL") == ["positive"]
