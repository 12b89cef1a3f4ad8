"""The model-quality demonstration (BENCHMARKS.md): traffic shifts from movie reviews to tweets, Prometheus sees
the drift, labels come back, `tuneship update` retrains, gates and switches the live server.

    .venv/bin/python benchmarks/update_loop.py model_repository --model sentiment --checkpoint runs/sentiment \
        --out runs/bench/update_loop.json

A copy of the pipeline is served by the embedded Triton (explicit model control) and scraped every second by a
real Prometheus running the project's rules, with the windows shortened so the demonstration takes minutes, not
hours (30 min windows -> 1 min, `for: 15m` -> 30 s; the expressions are the same). The tweets are the bundled
set with neutral dropped and positive/negative mapped to fresh/rotten; a held-out part of them and the
checkpoint's Rotten Tomatoes eval set are scored in process before and after.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
LABEL_MAP = {"positive": "fresh", "negative": "rotten"}


def _demo_rules(source: Path, target: Path) -> Path:
    text = source.read_text()
    text = text.replace("[30m]", "[1m]").replace("* 1800", "* 60").replace(">= 200", ">= 50")
    text = re.sub(r"for: (15m|30m)", "for: 30s", text)
    rules = yaml.safe_load(text)
    for group in rules["groups"]:
        group["interval"] = "1s"
    target.write_text(yaml.safe_dump(rules, sort_keys=False))
    return target


def start_prometheus(work: Path, triton_metrics_port: int, live_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """A real Prometheus scraping Triton and the live-quality exporter every second, with the project's rules on
    the demonstration's short windows; the process and its port."""
    from tuneship.deploy import free_port

    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_demo_rules(ROOT / "deploy/prometheus/recording_rules.yml", work / "recording.yml")),
                       str(_demo_rules(ROOT / "deploy/prometheus/alert_rules.yml", work / "alerts.yml"))],
        "scrape_configs": [
            {"job_name": "triton", "static_configs": [{"targets": [f"127.0.0.1:{triton_metrics_port}"]}]},
            {"job_name": "tuneship-monitor", "static_configs": [{"targets": [f"127.0.0.1:{live_port}"]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("wb"))
    return process, port


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
    return result


def _value(port: int, expr: str) -> float | None:
    result = _query(port, expr)
    return round(float(result[0]["value"][1]), 4) if result else None


def _tweets(seed: int) -> list[tuple[str, str]]:
    from tuneship.trainer.builtin_data import load_builtin

    rows = [(e.text, LABEL_MAP[e.label]) for e in load_builtin("tweets").examples if e.label in LABEL_MAP]
    random.Random(seed).shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="sentiment")
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/sentiment"))
    parser.add_argument("--work", type=Path, default=Path("runs/update-demo"))
    parser.add_argument("--feedback", type=int, default=1500, help="tweets served, then labelled")
    parser.add_argument("--eval", type=int, default=500, help="tweets held out for before/after accuracy")
    parser.add_argument("--phase-seconds", type=float, default=90.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/update_loop.json"))
    args = parser.parse_args()

    from tuneship.client import TextClassifier, TritonClient, TritonError
    from tuneship.deploy import ServeOptions, TritonServer, free_port
    from tuneship.exporter.text.texts import read_jsonl
    from tuneship.monitor import FeedbackStore, PredictionLog
    from tuneship.monitor.live import serve as serve_live
    from tuneship.monitor.scoring import PublishedClassifier
    from tuneship.monitor.update import UpdateOptions, run_update
    from tuneship.trainer.text.data import write_jsonl

    name = args.model
    args.work = args.work.resolve()  # Prometheus reads rule files relative to its config file
    shutil.rmtree(args.work, ignore_errors=True)
    repository = args.work / "repository"
    for model in (name, f"{name}_tokenizer", f"{name}_model", f"{name}_postprocess"):
        shutil.copytree(args.repository / model, repository / model, ignore=shutil.ignore_patterns("__pycache__"))
    tweets = _tweets(seed=7)
    tweet_eval, feedback = tweets[:args.eval], tweets[args.eval:args.eval + args.feedback]
    rt_texts, rt_labels = read_jsonl(args.checkpoint / "eval.jsonl", 1000)
    results: dict[str, Any] = {"tweets_feedback": len(feedback), "tweets_eval": len(tweet_eval),
                               "rt_eval": len(rt_texts)}

    def accuracies(label: str) -> None:
        scorer = PublishedClassifier(repository, name)
        results[label] = {
            "version": scorer.version,
            "tweets_accuracy": round(scorer.accuracy([t for t, _ in tweet_eval], [y for _, y in tweet_eval]), 4),
            "rt_accuracy": round(scorer.accuracy(rt_texts, rt_labels), 4)}
        print(f"{label}: {results[label]}", flush=True)

    accuracies("before")
    store = FeedbackStore(str(args.work / "feedback.db"))
    live_port = free_port()
    live = serve_live(store, live_port, window_s=600)
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        prometheus, prometheus_port = start_prometheus(args.work, server.metrics_port, live_port)
        try:
            def traffic(texts: list[str], seconds: float, log: PredictionLog | None = None) -> int:
                sent = 0
                deadline = time.monotonic() + seconds
                with TritonClient(server.grpc_url) as client:
                    classifier = TextClassifier(client, name, batch_size=8, log=log)
                    while time.monotonic() < deadline:
                        chunk = texts[sent % len(texts):sent % len(texts) + 8] or texts[:8]
                        classifier.classify(chunk)
                        sent += len(chunk)
                return sent

            drift = f'model_version:prediction_label_psi:30m{{model="{name}"}}'
            confidence = f'model_version:confidence_psi:30m{{model="{name}"}}'
            served_rt = traffic(rt_texts, args.phase_seconds)
            results["reviews_phase"] = {"texts": served_rt, "label_psi": _value(prometheus_port, drift),
                                        "confidence_psi": _value(prometheus_port, confidence)}
            print(f"reviews phase: {results['reviews_phase']}", flush=True)
            shift_started = time.monotonic()
            served_tweets = traffic([t for t, _ in feedback], args.phase_seconds, PredictionLog(store))
            firing = _query(prometheus_port, 'ALERTS{alertstate="firing",alertname=~"PredictionDrift|ConfidenceDrift"}')
            results["tweets_phase"] = {"texts": served_tweets, "label_psi": _value(prometheus_port, drift),
                                       "confidence_psi": _value(prometheus_port, confidence),
                                       "alerts_firing": sorted({a["metric"]["alertname"] for a in firing}),
                                       "seconds_after_shift": round(time.monotonic() - shift_started, 1)}
            print(f"tweets phase: {results['tweets_phase']}", flush=True)
            labelled = store.import_labels(name, [t for t, _ in feedback], [y for _, y in feedback])
            time.sleep(5)
            live_before = _value(prometheus_port, f'tuneship_live_accuracy{{model="{name}"}}')
            results["feedback"] = {"matched": labelled.matched, "added": labelled.added, "live_accuracy": live_before}
            print(f"feedback: {results['feedback']}", flush=True)
            labelled_file = args.work / "labelled-tweets.jsonl"
            rows = [r for r in store.labelled(name) if r.text is not None]
            write_jsonl(labelled_file, [r.text or "" for r in rows], [r.true_label for r in rows])

            failures: list[str] = []
            answered = [0]
            stop = threading.Event()

            def load() -> None:
                with TritonClient(server.grpc_url) as client:
                    classifier = TextClassifier(client, name, batch_size=4)
                    while not stop.is_set():
                        try:
                            classifier.classify([t for t, _ in feedback[:4]])
                            answered[0] += 1
                        except TritonError as error:
                            failures.append(str(error))

            worker = threading.Thread(target=load)
            worker.start()
            started = time.monotonic()
            try:
                report = run_update(UpdateOptions(name=name, new_data=labelled_file, output=args.work / "candidate",
                                                  repository=repository, checkpoint=args.checkpoint,
                                                  url=server.grpc_url))
            finally:
                stop.set()
                worker.join()
            results["update"] = {"seconds": round(time.monotonic() - started, 1), "passed": report.passed,
                                 "reason": report.reason, "gate": report.rows,
                                 "published_versions": report.published_versions,
                                 "requests_during_update": answered[0], "failed_requests": len(failures)}
            print(f"update: {results['update']}", flush=True)
            accuracies("after")
            served_after = traffic([t for t, _ in feedback], args.phase_seconds, PredictionLog(store))
            store.import_labels(name, [t for t, _ in feedback], [y for _, y in feedback])
            time.sleep(5)
            version = str(report.published_versions.get(name, ""))
            results["after_phase"] = {
                "texts": served_after,
                "live_accuracy_new_version": _value(
                    prometheus_port, f'tuneship_live_accuracy{{model="{name}",version="{version}"}}')}
            print(f"after: {results['after_phase']}", flush=True)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)
            live.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
