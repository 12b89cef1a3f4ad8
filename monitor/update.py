"""`tuneship update`: retrain the serving model on new labelled data, and publish it only if it is better.

1. The serving version's checkpoint (from the repository's export report) and its recipe (its manifest).
2. New data, validated like training data, split into a training part and a held-out part (stratified, seeded).
3. Continued training from the serving checkpoint on the new part mixed with a replay sample of the original
   training data (so the old domain is not forgotten); checkpoints that are not plain models (adapters, frozen
   features) are retrained from their base model on the same mix instead.
4. Export of the candidate into a scratch repository, through the usual validation and accuracy gate.
5. The promotion gate: the serving version and the candidate, as published, answer the same texts: the
   held-out new data (the candidate must win by `margin_points`) and the original eval set (it may lose at most
   `max_original_drop_points`). The table is printed and saved.
6. A passing candidate's files are copied into the served repository as the next version (the files that were
   gated, not a re-export) and, with a server, loaded with the usual hot update; a failing one is not.
Every run appends a record to `<repository>/<name>/updates.jsonl`: data fingerprint, parent version, figures.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneship.monitor.options import UpdateOptions as UpdateOptions
from tuneship.repository import (
    ADAPTER_INFO,
    ADAPTERS_DIR,
    LABELS_FILE,
    REPORT_FILE,
    UPDATE_REPORT,
    UPDATES_LOG,
)

UPDATES_FILE = UPDATES_LOG


class UpdateError(ValueError):
    """The update cannot run; the message says what is missing or wrong."""


@dataclass
class GateRow:
    texts: str
    count: int
    serving: float
    candidate: float

    @property
    def change_points(self) -> float:
        # Rounded: 0.855 - 0.865 is -1.0000000000000009 points in floats, which failed a 1-point allowance.
        return round(100 * (self.candidate - self.serving), 6)


@dataclass
class UpdateReport:
    name: str
    parent_version: int
    candidate: str
    new_data: str
    data_fingerprint: str
    new_train: int
    new_holdout: int
    replayed: int
    rows: list[dict[str, Any]]
    passed: bool
    reason: str
    published_versions: dict[str, int] = field(default_factory=dict)
    shadow: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    started_at: str = ""

    def table(self) -> str:
        lines = [f"{'texts':<28}{'count':>7}{'serving v' + str(self.parent_version):>14}{'candidate':>11}"
                 f"{'change':>9}"]
        for row in self.rows:
            lines.append(f"{row['texts']:<28}{row['count']:>7}{row['serving']:>14.4f}{row['candidate']:>11.4f}"
                         f"{100 * (row['candidate'] - row['serving']):>+8.1f}")
        return "\n".join(lines)


def served_model(name: str) -> str:
    """The served model of an update's `--model`: MODEL, or MODEL:ADAPTER for an adapter of a generator."""
    return name.split(":", 1)[0]


def _serving(options: UpdateOptions) -> tuple[int, Path, dict[str, Any]]:
    from tuneship.repository import existing_versions, graph_model

    model = served_model(options.name)
    model_dir = options.repository / graph_model(options.repository, model)
    versions = existing_versions(model_dir) if model_dir.is_dir() else []
    if not versions:
        raise UpdateError(f"{options.repository}: no published {model!r} to update (export one first)")
    report_path = options.repository / model / REPORT_FILE
    if model != options.name:  # an adapter: its own export report, beside its weights
        adapter = options.name.split(":", 1)[1]
        report_path = options.repository / model / ADAPTERS_DIR / adapter / REPORT_FILE
        if not report_path.parent.is_dir():
            raise UpdateError(f"{report_path.parent}: no adapter {adapter!r} is published for {model}")
        info_path = report_path.parent / ADAPTER_INFO
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        report: dict[str, Any] = {"checkpoint": info.get("checkpoint")}
    else:
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    checkpoint = options.checkpoint or (Path(report["checkpoint"]) if report.get("checkpoint") else None)
    if checkpoint is None:
        raise UpdateError(f"{report_path} does not say which checkpoint {options.name!r} came from (exported by an "
                          "older tuneship): pass --checkpoint")
    if not (checkpoint / "tuneship.json").is_file():
        raise UpdateError(f"{checkpoint}: not a tuneship checkpoint (no tuneship.json)")
    return versions[-1], checkpoint, json.loads((checkpoint / "tuneship.json").read_text())


def _sample(examples: list[Any], count: int, seed: int) -> list[Any]:
    if count >= len(examples):
        return list(examples)
    return random.Random(seed).sample(examples, count)


def run_update(options: UpdateOptions) -> UpdateReport:
    """The serving version's task decides how it is updated (the task table's `updater`)."""
    from tuneship.tasks import DEFAULT_TASK, load, task

    started = time.monotonic()
    parent, checkpoint, manifest = _serving(options)
    if options.output.resolve() == checkpoint.resolve():
        raise UpdateError(f"--output {options.output} is the serving checkpoint itself: write the candidate elsewhere")
    row = task(str(manifest.get("task", DEFAULT_TASK)))
    if not row.updatable or row.updater is None:
        raise UpdateError(f"{checkpoint}: tuneship update retrains text classifiers and instruct models; this is "
                          f"{row.name!r} ({row.description})")
    if options.url is not None and options.publish:
        _check_server(options)  # before minutes of training, not after
    report: UpdateReport = load(row.updater)(options, parent, checkpoint, manifest)
    report.seconds = round(time.monotonic() - started, 1)
    from tuneship.trainer import save_json

    save_json(options.output / UPDATE_REPORT, asdict(report))
    _record(options.repository / served_model(options.name) / UPDATES_FILE, report)
    return report


def update_text_classifier(options: UpdateOptions, parent: int, checkpoint: Path,
                           manifest: dict[str, Any]) -> UpdateReport:
    from tuneship.exporter import TextExportOptions, export_checkpoint, read_jsonl, serving_options
    from tuneship.monitor.scoring import PublishedClassifier
    from tuneship.progress import step
    from tuneship.repository import repository_lock
    from tuneship.trainer import (
        DataError,
        TextTrainConfig,
        config_from_hyperparameters,
        data_fingerprint,
        load_file,
        prepare_data,
        stratified_split,
        train,
        write_jsonl,
    )

    labels = list(manifest["labels"])
    try:
        new = load_file(options.new_data, options.text_column, options.label_column)
    except DataError as error:
        raise UpdateError(str(error)) from None
    unknown = sorted(set(new.labels) - set(labels))
    if unknown:
        raise UpdateError(f"{options.new_data}: labels {unknown} are not the model's labels {labels}; map them to "
                          "the model's labels (or drop those rows) first")
    new_train, holdout = stratified_split(new, options.holdout_fraction, options.seed)
    if not new_train.examples or not holdout.examples:
        raise UpdateError(f"{options.new_data}: {len(new.examples)} labelled texts are too few to split into "
                          f"training and held-out parts (--holdout-fraction {options.holdout_fraction})")
    recipe = dict(manifest.get("hyperparameters", {}))
    original = config_from_hyperparameters(recipe)
    if not isinstance(original, TextTrainConfig):
        raise UpdateError(f"{checkpoint}: tuneship update retrains text classifiers; this checkpoint's task is "
                          f"{original.task}")
    with step("reading the original training data for replay"):
        original_train = prepare_data(original).train
    replay = _sample(original_train.examples, round(options.replay_ratio * len(new_train.examples)), options.seed)
    original_eval_texts, original_eval_labels = read_jsonl(checkpoint / "eval.jsonl", 1_000_000)

    options.output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".update-", dir=options.output.parent))
    try:
        data_dir = scratch / "data"
        data_dir.mkdir()
        mixed = new_train.examples + replay
        random.Random(options.seed).shuffle(mixed)
        write_jsonl(data_dir / "train.jsonl", [e.text for e in mixed], [e.label for e in mixed])
        write_jsonl(data_dir / "holdout.jsonl", holdout.texts, holdout.labels)
        continued = bool(manifest.get("merged")) and manifest.get("method") != "features"
        config = config_from_hyperparameters(
            recipe, data=str(data_dir / "train.jsonl"), eval_file=str(data_dir / "holdout.jsonl"),
            max_train_samples=None, max_eval_samples=None, output=str(options.output), overwrite=True,
            resume=False, model=str(checkpoint) if continued else recipe.get("model"),
            epochs=options.epochs if options.epochs is not None else recipe.get("epochs", 1.0),
            learning_rate=options.learning_rate if options.learning_rate is not None else recipe.get("learning_rate"),
            seed=options.seed)
        how = "continuing from the serving checkpoint" if continued else "retraining from the base model"
        print(f"update of {options.name} v{parent}: {len(new_train.examples)} new + {len(replay)} replayed "
              f"original examples, {how} ({config.method}); {len(holdout.examples)} new texts held out")
        train(config)
        candidate_repo = scratch / "repository"
        # The candidate is published the way the serving version is (ensemble or fused: or it could not replace
        # it), with the serving settings its configs have now (a tune's choice is not undone by an update).
        export_checkpoint(TextExportOptions(checkpoint=options.output, name=options.name, repository=candidate_repo,
                                            serving=serving_options(options.repository, options.name)))
        with step("scoring the serving version and the candidate on the same texts"):
            serving = PublishedClassifier(options.repository, options.name, parent)
            candidate = PublishedClassifier(candidate_repo, options.name)
            rows = [GateRow("new data (held out)", len(holdout.examples), serving.accuracy(holdout.texts,
                                                                                           holdout.labels),
                            candidate.accuracy(holdout.texts, holdout.labels)),
                    GateRow("original eval set", len(original_eval_texts),
                            serving.accuracy(original_eval_texts, original_eval_labels),
                            candidate.accuracy(original_eval_texts, original_eval_labels))]
        gain, drop = rows[0].change_points, -rows[1].change_points
        passed = gain >= options.margin_points and drop <= options.max_original_drop_points
        reason = (f"new data {gain:+.1f} points (needs +{options.margin_points:g}), original eval "
                  f"{-drop:+.1f} points (may lose {options.max_original_drop_points:g})")
        shadow = _shadow(options, candidate)
        if shadow:
            print(f"shadow: the candidate gives the serving version's live answer on "
                  f"{100 * shadow['agreement']:.1f}% of the {shadow['texts']} latest logged texts")
            if shadow["agreement"] < options.min_shadow_agreement:
                passed = False
                reason += (f"; shadow agreement {100 * shadow['agreement']:.1f}% is under "
                           f"{100 * options.min_shadow_agreement:g}%")
        report = UpdateReport(
            name=options.name, parent_version=parent, candidate=str(options.output), new_data=str(options.new_data),
            data_fingerprint=data_fingerprint(new.texts, new.labels), new_train=len(new_train.examples),
            new_holdout=len(holdout.examples), replayed=len(replay), rows=[asdict(r) for r in rows], passed=passed,
            reason=("passed: " if passed else "not published: ") + reason,
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), shadow=shadow)
        print(report.table())
        print(report.reason)
        if passed and options.publish:
            with repository_lock(options.repository, what=f"tuneship update of {options.name}"):
                report.published_versions = _publish(options, candidate_repo)
            print("published " + ", ".join(f"{m} v{v}" for m, v in report.published_versions.items()))
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _shadow(options: UpdateOptions, candidate: Any) -> dict[str, Any]:
    """The candidate answers the latest live texts the serving version answered (logged by PredictionLog):
    how often it gives the same label, before anyone is switched."""
    if options.shadow_store is None:
        return {}
    from tuneship.monitor.store import FeedbackStore

    with FeedbackStore(options.shadow_store) as store:
        answers = store.recent_answers(options.name, options.shadow_texts)
    if not answers:
        print(f"shadow: no logged live answers of {options.name!r} with their texts in {options.shadow_store}")
        return {"texts": 0, "agreement": float("nan")}
    predicted = candidate.predict([text for text, _ in answers])
    agreement = sum(p == label for p, (_, label) in zip(predicted, answers, strict=True)) / len(answers)
    return {"texts": len(answers), "agreement": round(agreement, 4)}


def _copy_versions(source: Path, target: Path, name: str, version: int | None = None) -> dict[str, int]:
    """The pipeline's models' files of one version in `source` (default: the latest) as the next versions in the
    served repository: the candidate exactly as gated, or an earlier version brought back."""
    from tuneship.repository import Pipeline, existing_versions, publish_copy, write_text_atomic

    pipeline = Pipeline(source, name)
    versions = {}
    for model in pipeline.models:
        folder = source / model
        chosen = version if version in existing_versions(folder) else None
        versions[model] = publish_copy(pipeline.version_dir(model, chosen), target, pipeline.config(model))
        for extra in (LABELS_FILE, "requirements.txt"):
            if (folder / extra).is_file():
                write_text_atomic(target / model / extra, (folder / extra).read_text(encoding="utf-8"))
    if source != target:
        report = json.loads((source / name / REPORT_FILE).read_text())
        report.update(repository=str(target), versions=versions)
        write_text_atomic(target / name / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    return versions


def _check_server(options: UpdateOptions) -> None:
    from tuneship.client import ADMIN_HEADER, ClientOptions, TritonClient, TritonError

    headers = {ADMIN_HEADER: options.admin_key} if options.admin_key else {}
    with TritonClient(options.url or "", ClientOptions(headers=headers)) as client:
        try:
            client.wait_until_ready(served_model(options.name), timeout_s=10.0)
        except TritonError as error:
            raise UpdateError(f"--url {options.url}: {error}; start the server (tuneship serve) or leave --url out "
                              "to publish the files for a polling server") from None


def _switch(repository: Path, name: str, produce: Callable[[], dict[str, int]], url: str | None,
            admin_key: str | None) -> dict[str, int]:
    """Write the next versions; with a server, make it serve them (removed again if they fail to load)."""
    if url is None:
        return produce()
    from tuneship.client import ADMIN_HEADER, ClientOptions, TritonClient
    from tuneship.deploy import switch_to

    headers = {ADMIN_HEADER: admin_key} if admin_key else {}
    with TritonClient(url, ClientOptions(headers=headers)) as client:
        return switch_to(client, repository, name, produce).versions


def _publish(options: UpdateOptions, candidate_repo: Path) -> dict[str, int]:
    return _switch(options.repository, options.name,
                   lambda: _copy_versions(candidate_repo, options.repository, options.name), options.url,
                   options.admin_key)


def rollback(repository: Path, name: str, to: int | None = None, url: str | None = None,
             admin_key: str | None = None) -> dict[str, int]:
    """Serve an earlier version again (default: the one before the latest), published as the next version so
    that history only grows and a polling server sees an ordinary update."""
    from tuneship.repository import existing_versions, graph_model, repository_lock

    graph = graph_model(repository, name)
    available = existing_versions(repository / graph) if (repository / graph).is_dir() else []
    if len(available) < 2 and to is None:
        raise UpdateError(f"{repository}: {name!r} has {len(available)} version(s) on disk: nothing to roll back to")
    target = to if to is not None else available[-2]
    if target not in available:
        raise UpdateError(f"{repository}/{graph} has no version {target} (on disk: {available}; "
                          "export --keep decides how many stay)")
    with repository_lock(repository, what=f"tuneship rollback of {name} to v{target}"):
        versions = _switch(repository, name, lambda: _copy_versions(repository, repository, name, target), url,
                           admin_key)
    path = repository / name / UPDATES_FILE
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"rollback": True, "name": name, "from_version": available[-1],
                                 "to_version": target, "published_versions": versions,
                                 "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
    return versions


def _record(path: Path, report: UpdateReport) -> None:
    """One JSON line per update run, appended: which data made which version, and with what figures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(report)) + "\n")
