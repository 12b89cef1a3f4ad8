"""The generator quality demonstration (BENCHMARKS.md): a sentiment-tuned instruct model is asked about tweets after
reviews, then asked to reply to tweets (a task it was never taught); Prometheus compares its answers with the
version's reference, ratings and corrections of the tweet answers come back, and `tuneship update` tunes it on
them, gates both versions as served and switches the live server.

    .venv/bin/python benchmarks/generator_update_loop.py runs/demo-repo --model chat --checkpoint runs/demo-rt \
        --out benchmarks/results/generator_update_loop.json

A copy of the generator is served by the embedded Triton and scraped every second by a real Prometheus running the
project's rules, with the windows shortened so the demonstration takes minutes (30 min windows -> 1 min, `for:
15m` -> 30 s, 200 answers -> 50; the expressions are the same). Every answer goes through the client's opt-in
PredictionLog; the "users" then rate each logged answer against the data set's label (good, or bad with the right
answer as correction), `tuneship feedback export`'s conversations feed `tuneship update`, and a held-out set of
tweets and the checkpoint's review eval prompts are scored as served before and after.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The classifier demonstration's helpers (this folder is on the path when the script runs).
from update_loop import _query, _value, start_prometheus

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Is this tweet positive or negative? Answer with one word.\n\n{text}"
# A new kind of request the sentiment tune was never taught: it answers a sentiment word anyway (or repeats one
# until max_tokens), which moves the answers' label shares and lengths away from the reference.
REPLY = "Write a short friendly reply to this tweet.\n\n{text}"


def _tweets(seed: int) -> list[tuple[str, str]]:
    """The bundled tweets with neutral dropped, as the reviews' question about a tweet."""
    from tuneship.trainer.builtin_data import load_builtin

    rows = [(PROMPT.format(text=e.text), e.label) for e in load_builtin("tweets").examples
            if e.label in ("positive", "negative")]
    random.Random(seed).shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path)
    parser.add_argument("--model", default="chat")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/generator-update-demo"))
    parser.add_argument("--feedback", type=int, default=300, help="tweets asked, then rated and corrected")
    parser.add_argument("--eval", type=int, default=200, help="tweets held out for before/after exact match")
    parser.add_argument("--reviews", type=int, default=200, help="review prompts served before the shift")
    parser.add_argument("--replies", type=int, default=200, help="tweets to reply to (the second shift)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--replay-ratio", type=float, default=1.0, help="original conversations per correction")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the checkpoint's recipe")
    parser.add_argument("--load-interval", type=float, default=0.1,
                        help="seconds between the requests that keep the server busy during the update")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generator_update_loop.json"))
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from tuneship.client import Generator, TritonClient, TritonError
    from tuneship.deploy import ServeOptions, TritonServer, free_port
    from tuneship.monitor import FeedbackStore, PredictionLog
    from tuneship.monitor.generations import feedback_from_record
    from tuneship.monitor.generator_update import _matcher, served_exact_match
    from tuneship.monitor.live import serve as serve_live
    from tuneship.monitor.update import UpdateOptions, run_update
    from tuneship.repository import latest_version
    from tuneship.trainer import read_conversations
    from tuneship.trainer.instruct.data import Conversation

    name = args.model
    args.work = args.work.resolve()
    shutil.rmtree(args.work, ignore_errors=True)
    repository = args.work / "repository"
    shutil.copytree(args.repository / name, repository / name, ignore=shutil.ignore_patterns("__pycache__"))
    tweets = _tweets(seed=7)
    tweet_eval, asked = tweets[:args.eval], tweets[args.eval:args.eval + args.feedback]
    later = tweets[args.eval + args.feedback:args.eval + 2 * args.feedback]  # asked after the update: unseen
    reviews = read_conversations(args.checkpoint / "eval.jsonl", args.reviews)
    manifest = json.loads((args.checkpoint / "tuneship.json").read_text())
    same = _matcher(list(manifest.get("labels", [])))
    tokenizer = AutoTokenizer.from_pretrained(str(args.checkpoint))
    eval_conversations = [Conversation([{"role": "user", "content": p}, {"role": "assistant", "content": y}], "")
                          for p, y in tweet_eval]
    results: dict[str, Any] = {"model": name, "checkpoint": str(args.checkpoint), "tweets_asked": len(asked),
                               "tweets_after": len(later),
                               "tweets_eval": len(tweet_eval), "reviews": len(reviews)}

    def exact_matches(label: str) -> None:
        version = latest_version(repository, name)
        results[label] = {"version": int(version.name),
                          "tweets_exact_match": round(served_exact_match(version, tokenizer, eval_conversations, 8,
                                                                         same), 4),
                          "reviews_exact_match": round(served_exact_match(version, tokenizer, reviews, 8, same), 4)}
        print(f"{label}: {results[label]}", flush=True)

    exact_matches("before")
    store = FeedbackStore(str(args.work / "feedback.db"))
    live_port = free_port()
    live = serve_live(store, live_port, window_s=600)
    with TritonServer(ServeOptions(model_repository=repository, grpc_port=0, http_port=0, metrics_port=0)) as server:
        prometheus, prometheus_port = start_prometheus(args.work, server.metrics_port, live_port)
        try:
            def ask(prompts: list[Any], log: PredictionLog | None) -> list[Any]:
                """Every prompt once, 8 callers at a time (as served: the batcher decodes them together)."""
                with TritonClient(server.grpc_url) as client:
                    generator = Generator(client, name, log=log)
                    with ThreadPoolExecutor(max_workers=8) as pool:
                        return list(pool.map(lambda p: generator.generate(p, max_tokens=16), prompts))

            def figures() -> dict[str, Any]:
                model = f'{{model="{name}"}}'
                firing = _query(prometheus_port, 'ALERTS{alertstate="firing",alertname=~"Generation.*|LiveAnswer.*"}')
                return {"label_psi": _value(prometheus_port, f"model_version:generation_label_psi:30m{model}"),
                        "length_psi": _value(prometheus_port, f"model_version:generation_length_psi:30m{model}"),
                        "other_share": _value(prometheus_port, 'model_version_label:generation_label_share:rate30m'
                                                               f'{{model="{name}",label="other"}}'),
                        "alerts_firing": sorted({a["metric"]["alertname"] for a in firing})}

            started = time.monotonic()
            ask([c.prompt for c in reviews], None)
            time.sleep(35)  # the alerts' (shortened) 30 s hold
            results["reviews_phase"] = {**figures(), "seconds": round(time.monotonic() - started, 1)}
            print(f"reviews phase: {results['reviews_phase']}", flush=True)
            started = time.monotonic()
            log = PredictionLog(store)
            answers = ask([[{"role": "user", "content": p}] for p, _ in asked], log)
            # The alerts' (shortened) 30 s hold, while the 1-minute windows still hold the tweets' answers (after a
            # minute without traffic the shares are 0/0).
            time.sleep(35)
            results["tweets_phase"] = {**figures(), "seconds": round(time.monotonic() - started, 1)}
            print(f"tweets phase: {results['tweets_phase']}", flush=True)
            # The second shift: callers start asking for replies (not logged for feedback: their right answers
            # are not sentiment words, so they cannot correct this model's task).
            started = time.monotonic()
            replies = [[{"role": "user", "content": REPLY.format(text=p.rsplit("\n\n", 1)[-1])}]
                       for p, _ in later[:args.replies]]
            ask(replies, None)
            time.sleep(35)
            results["replies_phase"] = {**figures(), "seconds": round(time.monotonic() - started, 1)}
            print(f"replies phase: {results['replies_phase']}", flush=True)
            items = [feedback_from_record({"id": a.log_id, "rating": "good"} if same(a.text) == same(truth) else
                                          {"id": a.log_id, "rating": "bad", "correction": truth}, f"rating:{i}")
                     for i, (a, (_, truth)) in enumerate(zip(answers, asked, strict=True))]
            imported = store.generations.import_feedback(name, items)
            time.sleep(35)  # the live gauges' next scrape, then the quality alert's (shortened) 30 s hold
            results["feedback"] = {
                "matched": imported.matched, "rated_good": sum(bool(i.rating) for i in items),
                "corrected": sum(i.correction is not None for i in items),
                "live_exact_match": _value(prometheus_port, f'tuneship_live_answer_exact_match{{model="{name}"}}'),
                "alerts_firing": figures()["alerts_firing"]}
            print(f"feedback: {results['feedback']}", flush=True)
            corrections = args.work / "corrections.jsonl"
            rows = [r for r in store.generations.reviewed(name) if r.prompt and r.right_answer]
            corrections.write_text("".join(json.dumps({"messages": [*r.prompt, {"role": "assistant",
                                                                                 "content": r.right_answer}]}) + "\n"
                                           for r in rows if r.prompt is not None and r.right_answer is not None))

            failures: list[str] = []
            answered = [0]
            stop = threading.Event()

            def load() -> None:
                with TritonClient(server.grpc_url) as client:
                    generator = Generator(client, name)
                    while not stop.is_set():
                        try:
                            generator.generate(asked[answered[0] % len(asked)][0], max_tokens=4)
                            answered[0] += 1
                        except TritonError as error:
                            failures.append(str(error))
                        stop.wait(args.load_interval)  # steady traffic, not a loop that starves the training

            worker = threading.Thread(target=load)
            worker.start()
            started = time.monotonic()
            try:
                report = run_update(UpdateOptions(name=name, new_data=corrections, output=args.work / "candidate",
                                                  repository=repository, checkpoint=args.checkpoint,
                                                  url=server.grpc_url, epochs=args.epochs,
                                                  replay_ratio=args.replay_ratio,
                                                  learning_rate=args.learning_rate))
            finally:
                stop.set()
                worker.join()
            results["update"] = {"seconds": round(time.monotonic() - started, 1), "passed": report.passed,
                                 "reason": report.reason, "gate": report.rows,
                                 "published_versions": report.published_versions,
                                 "new_train": report.new_train, "new_holdout": report.new_holdout,
                                 "replayed": report.replayed,
                                 "requests_during_update": answered[0], "failed_requests": len(failures)}
            print(f"update: {results['update']}", flush=True)
            exact_matches("after")
            version = str(report.published_versions.get(name, ""))
            after = ask([[{"role": "user", "content": p}] for p, _ in later], PredictionLog(store))
            store.generations.import_feedback(name, [
                feedback_from_record({"id": a.log_id, "rating": "good"} if same(a.text) == same(truth) else
                                     {"id": a.log_id, "rating": "bad", "correction": truth}, f"after:{i}")
                for i, (a, (_, truth)) in enumerate(zip(after, later, strict=True))])
            time.sleep(5)
            results["after_phase"] = {"live_exact_match_new_version": _value(
                prometheus_port, f'tuneship_live_answer_exact_match{{model="{name}",version="{version}"}}')}
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
