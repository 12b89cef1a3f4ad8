"""Hardening figures (BENCHMARKS.md): the served sentiment model against careless and hostile callers.

    .venv/bin/python benchmarks/hardening.py model_repository --model sentiment --out runs/bench/hardening.json

Starts the embedded server on the repository (as `tuneship serve` would: loopback, stub watcher on) and
measures: (1) valid direct and ensemble requests failing while bad requests (out-of-range ids, too long)
are sent at the same time; (2) how long a 50 MB and a 4 MB text take to be refused, and the worst latency
another caller sees meanwhile; (3) how long after a `kill -9` of a stub the model answers correctly again,
and the longest any request took.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.client import ClientOptions, RetryPolicy, TextClassifier, TritonClient, TritonError
from tuneship.deploy import ServeOptions, TritonServer
from tuneship.deploy.stubs import list_stubs

REVIEWS = ["A gripping, beautifully acted film that stays with you for days.",
           "Dull, overlong and badly written; I checked my watch every ten minutes.",
           "A warm, funny and surprisingly moving family comedy."]


def _tokens(client: TritonClient, model: str) -> dict[str, np.ndarray[Any, Any]]:
    result = client.infer(f"{model}_tokenizer", {"TEXT": np.array([[REVIEWS[0].encode()]], dtype=np.object_)})
    return {name: np.asarray(array) for name, array in result.outputs.items()}


def isolation(server: TritonServer, model: str) -> dict[str, Any]:
    with TritonClient(server.grpc_url) as client:
        good = _tokens(client, model)
    counts = {"direct_ok": 0, "direct_failed": 0, "ensemble_ok": 0, "ensemble_failed": 0, "bad_refused": 0,
              "bad_answered": 0}
    lock = threading.Lock()

    def count(key: str) -> None:
        with lock:
            counts[key] += 1

    def direct() -> None:
        with TritonClient(server.grpc_url) as client:
            for _ in range(90):
                try:
                    client.infer(f"{model}_model", good, validate=False)
                    count("direct_ok")
                except TritonError:
                    count("direct_failed")

    def ensemble() -> None:
        with TritonClient(server.grpc_url) as client:
            classifier = TextClassifier(client, model, batch_size=1, concurrency=1)
            for _ in range(80):
                try:
                    classifier.classify([REVIEWS[1]])
                    count("ensemble_ok")
                except TritonError:
                    count("ensemble_failed")

    def bad(kind: int) -> None:
        with TritonClient(server.grpc_url) as client:
            for round_ in range(60):
                feeds = {k: v.copy() for k, v in good.items()}
                if kind < 3:
                    feeds["input_ids"][0, 1] = (999999, -1, 30522)[kind]
                else:
                    feeds = {k: np.ones((1, 513), dtype=np.int64) for k in good}
                try:
                    client.infer(f"{model}_model", feeds, validate=False)
                    count("bad_answered")
                except TritonError:
                    count("bad_refused")
                del round_

    threads = [threading.Thread(target=direct) for _ in range(4)]
    threads += [threading.Thread(target=ensemble) for _ in range(2)]
    threads += [threading.Thread(target=bad, args=(kind,)) for kind in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def bounded_work(server: TritonServer, model: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    options = ClientOptions(timeout_s=60, max_message_bytes=256 * 1024 * 1024, retry=RetryPolicy(max_attempts=1))
    for size_mb in (50, 4):
        text = ("word " * (size_mb * 1024 * 1024 // 5)).encode()
        others: list[float] = []
        stop = threading.Event()

        def other_caller(stop: threading.Event = stop, others: list[float] = others) -> None:
            with TritonClient(server.grpc_url) as client:
                classifier = TextClassifier(client, model, batch_size=1, concurrency=1)
                while not stop.is_set():
                    started = time.perf_counter()
                    with contextlib.suppress(TritonError):  # still timed: the wait is what this figure is about
                        classifier.classify([REVIEWS[2]])
                    others.append(time.perf_counter() - started)

        caller = threading.Thread(target=other_caller)
        caller.start()
        time.sleep(0.5)
        with TritonClient(server.grpc_url, options) as client:
            started = time.perf_counter()
            try:
                client.infer(model, {"TEXT": np.array([[text]], dtype=np.object_)}, validate=False)
                outcome = "answered"
            except TritonError as error:
                outcome = type(error).__name__
            seconds = time.perf_counter() - started
        time.sleep(0.5)
        stop.set()
        caller.join()
        figures[f"{size_mb}MB"] = {"outcome": outcome, "seconds": round(seconds, 3),
                                   "other_caller_worst_ms": round(1000 * max(others), 1),
                                   "other_caller_median_ms": round(1000 * statistics.median(others), 1)}
    return figures


def healing(server: TritonServer, model: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    deadline_s = 5.0
    for victim_model in (f"{model}_tokenizer", f"{model}_model"):
        outcomes: list[tuple[float, float, bool]] = []
        stop = threading.Event()

        def load(stop: threading.Event = stop, outcomes: list[tuple[float, float, bool]] = outcomes) -> None:
            options = ClientOptions(timeout_s=deadline_s, retry=RetryPolicy(max_attempts=1))
            with TritonClient(server.grpc_url, options) as client:
                classifier = TextClassifier(client, model, batch_size=3, concurrency=1)
                expected = [p.label for p in classifier.classify(REVIEWS)]
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        ok = [p.label for p in classifier.classify(REVIEWS)] == expected
                    except TritonError:
                        ok = False
                    outcomes.append((time.monotonic(), time.monotonic() - started, ok))

        callers = [threading.Thread(target=load) for _ in range(2)]
        for caller in callers:
            caller.start()
        time.sleep(2.0)
        assert server.pid is not None
        victim = next(s.pid for s in list_stubs(server.pid) if s.model == victim_model)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        time.sleep(20.0)
        stop.set()
        for caller in callers:
            caller.join()
        failed = [t for t, _, ok in outcomes if not ok and t > killed]
        figures[victim_model] = {
            "failed_requests": len(failed),
            "answering_again_after_s": round(max(failed) - killed, 2) if failed else 0.0,
            "longest_request_s": round(max(d for _, d, _ in outcomes), 2),
            "deadline_s": deadline_s,
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/hardening.json"))
    args = parser.parse_args()
    events: list[str] = []
    with TritonServer(ServeOptions(model_repository=args.repository, grpc_port=0, http_port=0, metrics_port=0),
                      log=events.append) as server:
        results = {"isolation": isolation(server, args.model), "bounded_work": bounded_work(server, args.model),
                   "healing": healing(server, args.model), "watcher_log": events}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
