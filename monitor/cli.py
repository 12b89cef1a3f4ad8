"""`tuneship feedback` (labels in, training data out, figures) and `tuneship monitor serve` (live accuracy)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from tuneship.arguments import (
    CommandError,
    existing_file,
    grpc_url,
    port_number,
    positive_float,
    positive_int,
)
from tuneship.monitor.options import ADMIN_KEY_HELP, URL_HELP, UpdateOptions
from tuneship.options import add_options, options_from_args

STORE_HELP = ("feedback store: a SQLAlchemy URL (sqlite:///feedback.db, postgresql+psycopg://...) or a SQLite "
              "file path (default: $TUNESHIP_FEEDBACK_STORE or feedback.db)")


def _default_store() -> str:
    return os.environ.get("TUNESHIP_FEEDBACK_STORE", "feedback.db")


def register(subparsers: Any) -> None:
    feedback = subparsers.add_parser("feedback", help="record true labels for served predictions, ratings and "
                                     "corrections for generated answers; export them")
    actions = feedback.add_subparsers(dest="action", required=True, metavar="ACTION")

    imported = actions.add_parser(
        "import", help="import labelled texts (text,label) or ratings and corrections of generated answers "
        "(id or prompt/messages, rating, correction); CSV/TSV/JSONL, or a Label Studio JSON export; validated")
    imported.add_argument("file", type=existing_file)
    imported.add_argument("--model", required=True, help="the served model (ensemble, or generator) the feedback "
                          "is for")
    imported.add_argument("--store", default=_default_store(), help=STORE_HELP)
    imported.add_argument("--text-column", default="text")
    imported.add_argument("--label-column", default="label")
    imported.set_defaults(handler=run_import)

    exported = actions.add_parser("export", help="write the labelled texts (JSONL text,label) or a generator's "
                                  "right answers (chat JSONL) as training data")
    exported.add_argument("--model", required=True)
    exported.add_argument("--out", type=Path, required=True, help="JSONL file to write (replaced atomically)")
    exported.add_argument("--store", default=_default_store(), help=STORE_HELP)
    exported.add_argument("--since-hours", type=positive_float, default=None,
                          help="only labels received in the last N hours (default: all)")
    exported.set_defaults(handler=run_export)

    queue = actions.add_parser(
        "queue", help="pick served predictions for people to label (a random share, the data check's suspects, "
        "texts unlike the training data, the least confident); write them as Label Studio tasks and CSV")
    queue.add_argument("--model", required=True, help="the served classifier whose logged predictions to pick from")
    queue.add_argument("--store", default=_default_store(), help=STORE_HELP)
    queue.add_argument("--output", type=Path, default=Path("runs/label-queue"),
                       help="folder for tasks.json (Label Studio import), label_config.xml and queue.csv")
    queue.add_argument("--size", type=positive_int, default=200, help="texts to pick")
    queue.add_argument("--random-share", type=share, default=0.2,
                       help="share picked at random from every open prediction (an unbiased accuracy estimate)")
    queue.add_argument("--reference", default=None,
                       help="the training data (a file or built-in set): served texts least like it are picked "
                            "as drifted (--novel-share of the queue)")
    queue.add_argument("--novel-share", type=share, default=0.2, help="share for the texts least like --reference")
    queue.add_argument("--suspects", type=existing_file, default=None,
                       help="a data check's issues.csv: its label issues and conflicts join the queue "
                            "(--suspect-share of it)")
    queue.add_argument("--suspect-share", type=share, default=0.2, help="share for the data check's suspects")
    queue.add_argument("--since-hours", type=positive_float, default=None,
                       help="only predictions of the last N hours (default: all)")
    queue.add_argument("--seed", type=int, default=42, help="seed of the random share")
    queue.set_defaults(handler=run_queue)

    stats = actions.add_parser("stats", help="predictions logged, labels received and accuracy per version")
    stats.add_argument("--store", default=_default_store(), help=STORE_HELP)
    stats.add_argument("--window-hours", type=positive_float, default=24.0,
                       help="accuracy over labels received in the last N hours")
    stats.set_defaults(handler=run_stats)

    update = subparsers.add_parser(
        "update", help="retrain the served classifier on new labelled data, or continue tuning an instruct model on "
        "corrected answers; publish it only if it is better")
    add_options(update, UpdateOptions)
    update.set_defaults(handler=run_update_command)

    back = subparsers.add_parser(
        "rollback", help="serve an earlier version of a classifier again (published as the next version)")
    back.add_argument("--model", required=True, help="the served pipeline (ensemble)")
    back.add_argument("--repository", type=Path, default=Path("model_repository"))
    back.add_argument("--to", type=positive_int, default=None,
                      help="the version to bring back (default: the one before the latest)")
    _add_switch_arguments(back)
    back.set_defaults(handler=run_rollback)

    monitor = subparsers.add_parser("monitor", help="model-quality monitoring")
    monitor_actions = monitor.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = monitor_actions.add_parser(
        "serve", help="export live quality per model version for Prometheus to scrape (classifiers: accuracy, "
        "macro-F1; generators: answers rated good, exact match)")
    serve.add_argument("--store", default=_default_store(), help=STORE_HELP)
    serve.add_argument("--port", type=port_number, default=9109, help="port to listen on (0: a free port)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--window", type=positive_float, default=3600.0,
                       help="seconds of labels the figures cover (a sliding window)")
    serve.set_defaults(handler=run_serve)


def _add_switch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", type=grpc_url, default=None, help=URL_HELP)
    parser.add_argument("--admin-key", default=None, help=ADMIN_KEY_HELP)


def _store(location: str) -> Any:
    from tuneship.monitor.store import FeedbackStore, StoreError

    try:
        return FeedbackStore(location)
    except StoreError as error:
        raise CommandError(str(error)) from None


def share(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"{value}: give a share between 0 and 1")
    return number


def run_queue(args: argparse.Namespace) -> int:
    from tuneship.monitor.queue import QueueError, QueueOptions, describe, make_queue

    options = QueueOptions(model=args.model, output=args.output, size=args.size, random_share=args.random_share,
                           novel_share=args.novel_share, suspect_share=args.suspect_share, reference=args.reference,
                           suspects=args.suspects, seed=args.seed,
                           since=time.time() - args.since_hours * 3600 if args.since_hours else None)
    if args.random_share + args.novel_share + args.suspect_share > 1.0:
        raise CommandError("--random-share, --novel-share and --suspect-share add up to more than 1")
    with _store(args.store) as store:
        try:
            queue = make_queue(options, store)
        except QueueError as error:
            raise CommandError(str(error)) from None
    print(describe(queue))
    print("wrote " + ", ".join(str(p) for p in queue.written))
    print(f"Label Studio: a project with {queue.written[1].name} as its labelling interface, import "
          f"{queue.written[0].name}; export it as JSON and `tuneship feedback import <export>.json --model "
          f"{args.model}`")
    return 0


def _import_label_studio(args: argparse.Namespace) -> int:
    from tuneship.monitor.labelstudio import LabelStudioError, read_export

    with _store(args.store) as store:
        labels = store.labels_of(args.model)
        if not labels:
            raise CommandError(f"--model {args.model}: no prediction log in {store.url}, so its labels are unknown")
        try:
            found, skipped = read_export(Path(args.file), args.model, labels)
        except LabelStudioError as error:
            raise CommandError(str(error)) from None
        result = store.import_labels(args.model, [f.text for f in found], [f.label for f in found])
    print(f"{len(found)} labelled tasks for {args.model} into {store.url}: {result.matched} matched a logged "
          f"prediction, {result.added} new examples, {result.unchanged} already labelled"
          + (f"; {skipped} tasks nobody labelled were left out" if skipped else ""))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from tuneship.monitor.generations import is_answer_feedback
    from tuneship.trainer import DataError, load_file

    if Path(args.file).suffix.lower() == ".json":  # a Label Studio export (CSV, TSV and JSONL are tables)
        return _import_label_studio(args)
    try:
        if is_answer_feedback(Path(args.file)):
            return _import_answer_feedback(args)
        data = load_file(Path(args.file), args.text_column, args.label_column)
    except DataError as error:
        raise CommandError(str(error)) from None
    with _store(args.store) as store:
        result = store.import_labels(args.model, data.texts, data.labels)
    print(f"{len(data.examples)} labelled texts for {args.model} into {store.url}: {result.matched} matched a "
          f"logged prediction, {result.added} new examples, {result.unchanged} already labelled")
    return 0


def _import_answer_feedback(args: argparse.Namespace) -> int:
    from tuneship.monitor.generations import read_answer_feedback

    items = read_answer_feedback(Path(args.file))
    with _store(args.store) as store:
        result = store.generations.import_feedback(args.model, items)
    print(f"{len(items)} ratings and corrections for {args.model} into {store.url}: {result.matched} matched a logged "
          f"generation, {result.added} corrections kept as new examples, {result.unchanged} already recorded"
          + (f", {len(result.unmatched)} ratings match no logged generation (first: {result.unmatched[0]})"
             if result.unmatched else ""))
    return 0


def _export_answers(args: argparse.Namespace, since: float | None) -> int:
    """A generator's right answers (corrections, answers rated good) as chat conversations to train on."""
    from tuneship.repository import write_text_atomic

    with _store(args.store) as store:
        rows = store.generations.reviewed(args.model, since=since)
    kept = [r for r in rows if r.prompt is not None and r.right_answer is not None]
    if not kept:
        raise CommandError(f"no labelled texts or right answers for {args.model!r} in {store.url}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "".join(json.dumps(
        {"messages": [*r.prompt, {"role": "assistant", "content": r.right_answer}]}, ensure_ascii=False) + "\n"
        for r in kept if r.prompt is not None))
    print(f"{len(kept)} conversations (corrected answers and answers rated good) written to {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    since = time.time() - args.since_hours * 3600 if args.since_hours else None
    with _store(args.store) as store:
        rows = store.labelled(args.model, since=since)
    if not rows:
        return _export_answers(args, since)
    kept = [r for r in rows if r.text is not None]
    if not kept:
        raise CommandError(f"no labelled texts for {args.model!r} in {store.url}"
                           + (f" ({len(rows)} labelled rows were logged redacted: only hashes)" if rows else ""))
    from tuneship.repository import write_text_atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "".join(json.dumps({"text": row.text, "label": row.true_label}, ensure_ascii=False)
                                        + "\n" for row in kept))
    skipped = len(rows) - len(kept)
    print(f"{len(kept)} labelled texts written to {args.out}"
          + (f" ({skipped} redacted rows have no text and were skipped)" if skipped else ""))
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from tuneship.monitor.generations import answer_quality
    from tuneship.monitor.store import window_quality

    since = time.time() - args.window_hours * 3600
    with _store(args.store) as store:
        counts = store.counts()
        quality = window_quality(store.labelled(since=since, predicted_only=True))
        generations = store.generations.counts()
        answers = answer_quality(store.generations.reviewed(since=since))
    if not counts and not generations:
        print(f"{store.url}: empty")
        return 0
    if generations:
        _print_answer_stats(generations, answers)
    if not counts:
        return 0
    print(f"{'model':<20}{'version':>8}{'logged':>9}{'labelled':>10}{'accuracy':>10}{'macro-F1':>10}")
    for row in counts:
        figures = quality.get((row["model"], row["version"] or ""), {})
        accuracy = f"{figures['accuracy']:.3f}" if figures else "-"
        f1 = f"{figures['macro_f1']:.3f}" if figures else "-"
        print(f"{row['model']:<20}{row['version'] or '-':>8}{row['predictions']:>9}{row['labelled']:>10}"
              f"{accuracy:>10}{f1:>10}")
    return 0


def _print_answer_stats(counts: list[dict[str, Any]], answers: dict[tuple[str, str, str], dict[str, float]]) -> None:
    print(f"{'generator':<20}{'version':>8}{'logged':>9}{'reviewed':>10}{'good':>8}{'exact':>8}")
    for row in counts:
        merged = [f for (m, v, _a), f in answers.items() if m == row["model"] and v == (row["version"] or "")]
        rated = sum(f["rated"] for f in merged)
        good = sum(f["good_share"] * f["rated"] for f in merged if f["rated"]) / rated if rated else None
        matched = [f for f in merged if f["exact_match"] == f["exact_match"]]  # not NaN
        total = sum(f["reviewed"] for f in matched)
        exact = sum(f["exact_match"] * f["reviewed"] for f in matched) / total if total else None
        print(f"{row['model']:<20}{row['version'] or '-':>8}{row['generations']:>9}{row['reviewed']:>10}"
              f"{'-' if good is None else f'{good:.3f}':>8}{'-' if exact is None else f'{exact:.3f}':>8}")
    print()


def run_serve(args: argparse.Namespace) -> int:
    from tuneship.monitor.live import serve

    store = _store(args.store)
    try:
        server = serve(store, args.port, args.window, args.host)
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from None
    print(f"live accuracy of {store.url} on http://{args.host}:{server.server_port}/metrics "
          f"(window {args.window:g} s); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
        return 0


def run_update_command(args: argparse.Namespace) -> int:
    from tuneship.monitor.update import UpdateError, run_update

    options = options_from_args(UpdateOptions, args,
                                admin_key=args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY"))
    try:
        report = run_update(options)
    except UpdateError as error:
        raise CommandError(str(error)) from None
    return 0 if report.passed else 1


def run_rollback(args: argparse.Namespace) -> int:
    from tuneship.monitor.update import UpdateError, rollback

    try:
        versions = rollback(args.repository, args.model, args.to, args.url,
                            args.admin_key or os.environ.get("TUNESHIP_ADMIN_KEY"))
    except UpdateError as error:
        raise CommandError(str(error)) from None
    print(f"{args.model}: version {args.to or 'before the latest'} published again as "
          + ", ".join(f"{m} v{v}" for m, v in versions.items()))
    return 0
