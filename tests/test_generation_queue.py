"""The generator's bounded queue, on the real embedded Triton: one slot, one waiting place. Requests beyond them are
refused at once with the limit named, a waiting request starts when the slot frees, and the counts are published."""

from __future__ import annotations

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

from tuneship.client import ClientOptions, Generator, ResourceExhaustedError, RetryPolicy, TritonClient
from tuneship.deploy import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PROMPT = "Is this review positive or negative? A gripping film."


@pytest.fixture(scope="module")
@costs("integration")
def server(generator_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    from tuneship.repository import read_config, write_config

    repository = tmp_path_factory.mktemp("one-slot")
    shutil.copytree(generator_repository / "chat", repository / "chat")
    config = read_config(repository, "chat")
    config.parameters["max_concurrency"].string_value = "1"
    config.parameters["max_queue"].string_value = "1"
    write_config(repository, config)
    with running_server(repository) as running:
        yield running


def _metric(server: TritonServer, name: str, label: str = "") -> float:
    raw = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
               if line.startswith(name) and label in line)


def test_a_full_queue_refuses_at_once_and_a_freed_slot_starts_the_waiting_request(server: TritonServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    once = ClientOptions(retry=RetryPolicy(max_attempts=1))

    def short(_: int) -> object:
        with TritonClient(server.grpc_url, once) as client:
            try:
                return Generator(client, "chat").generate(PROMPT, max_tokens=4)
            except ResourceExhaustedError as error:
                return error

    refused_before = _metric(server, "tuneship_generation_refused_total", 'reason="queue_full"')
    # The tiny model decodes its 2,000 tokens in about a second: on a loaded machine the slot may free before the
    # three requests arrive (then they are answered, rightly). Such a race is set up again, at most thrice.
    refusals: list[object] = []
    for _ in range(3):
        with TritonClient(server.grpc_url, once) as first:
            running = Generator(first, "chat").stream(PROMPT, max_tokens=2000, min_tokens=2000)
            pieces = iter(running)
            next(pieces)  # it holds the only slot now; three more arrive at once: one waits, two are refused
            with ThreadPoolExecutor(3) as pool:
                calls = [pool.submit(short, i) for i in range(3)]
                wait_for(lambda calls=calls: sum(c.done() for c in calls) >= 2, "two of three requests answered")
                done = [c.result() for c in calls if c.done()]
                refusals = [d for d in done if isinstance(d, ResourceExhaustedError)]
                running.cancel()  # frees the slot: the waiting request starts and finishes
                results = [c.result(timeout=60) for c in calls]
        if len(refusals) == 2:
            break
    assert len(refusals) == 2, done
    assert all("max_concurrency 1, max_queue 1" in str(error) for error in refusals)
    answered = [r for r in results if not isinstance(r, ResourceExhaustedError)]
    assert len(answered) == 1 and answered[0].tokens >= 1  # type: ignore[attr-defined]
    wait_for(lambda: _metric(server, "tuneship_generation_refused_total", 'reason="queue_full"') - refused_before >= 2,
             "the two refusals counted")
    wait_for(lambda: _metric(server, "tuneship_generation_queue_seconds_count") >= 2, "the queue's waits counted")


def test_the_openai_api_answers_a_full_queue_with_429_and_retry_after(server: TritonServer) -> None:
    """Through the OpenAI-compatible API the same refusal is HTTP 429 with Retry-After, the SDK's RateLimitError."""
    import openai

    from tuneship.api import ApiOptions, ApiServer

    once = ClientOptions(retry=RetryPolicy(max_attempts=1))
    refused: Any = None
    with ApiServer(ApiOptions(url=server.grpc_url, port=0)) as api:
        client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="none", max_retries=0)
        # The tiny model decodes its 2,000 tokens in about a second: on a loaded machine the slot may free before
        # the API's request arrives (then it is answered, rightly). Such a race is set up again, at most thrice.
        for _ in range(3):
            with TritonClient(server.grpc_url, once) as first, TritonClient(server.grpc_url, once) as second:
                running = Generator(first, "chat").stream(PROMPT, max_tokens=2000, min_tokens=2000)
                pieces = iter(running)
                next(pieces)  # the only slot is taken; a second request takes the only waiting place
                waiting = Generator(second, "chat").stream(PROMPT, max_tokens=2000, min_tokens=2000)
                threading.Thread(target=list, args=(waiting,), daemon=True).start()
                wait_for(lambda: _metric(server, "tuneship_generation_queued") >= 1, "the second request queued")
                try:
                    client.chat.completions.create(model="chat", messages=[{"role": "user", "content": PROMPT}],
                                                   max_tokens=4)
                except openai.RateLimitError as error:
                    refused = error
                running.cancel()
                waiting.cancel()
            if refused is not None:
                break
    assert refused is not None, "the full queue never refused the API's request"
    assert refused.status_code == 429 and refused.response.headers["retry-after"] == "1"
    assert refused.code == "queue_full" and "max_queue 1" in refused.message
