"""The search: an Optuna study with two objectives (quality up, served p99 down), constraints as feasibility, the
median rule for hopeless trials, a budget shared by every worker on the study, and a study that survives its
process (`--resume` continues an interrupted one; PostgreSQL storage lets several workers share it)."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.search.measure import Measurer, TritonMeasurer
from tuneship.search.options import DATA_OPTIONS, SearchError, SearchOptions
from tuneship.search.pruning import MedianRule, TrialPruned
from tuneship.search.report import (
    HEADER,
    INTERRUPTED,
    OVER_BUDGET,
    Row,
    closest,
    constraint_values,
    constraints_text,
    front,
    plot,
    rows_of,
    table_row,
    write_results,
)
from tuneship.search.space import Space, default_choice, resolve, suggest
from tuneship.search.trial import TrialFailed, run_trial

MeasurerFactory = Callable[[SearchOptions, Space], Measurer]


@dataclass
class SearchReport:
    rows: list[Row]
    front: list[Row]
    quality: str
    png: Path | None

    @property
    def best(self) -> Row | None:
        return self.front[0] if self.front else None


class _Skip(Exception):
    """A trial started after the budget was used up by other workers: recorded as not run."""


def _counts(trial: Any) -> bool:
    """Whether a trial used the budget: finished, pruned, or failed for a reason of its own."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("reason") not in (None, INTERRUPTED, OVER_BUDGET)


def _storage(options: SearchOptions) -> Any:
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, TPE's options
    url = options.storage_url()
    for attempt in range(3):
        try:
            if options.shared_storage:
                # A worker that dies leaves its trial running: its heartbeat stops, another worker fails it after
                # the grace period and runs it again.
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=10, grace_period=60,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1))
            return optuna.storages.RDBStorage(url)
        except Exception as error:  # SQLAlchemy's errors carry the driver's reason on their first line
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if "duplicate key" in reason and attempt < 2:  # workers starting together both create the tables
                time.sleep(1.0 + attempt)
                continue
            raise SearchError(f"--storage {url}: cannot be reached: {reason}") from None
    raise AssertionError("unreachable")


def _fingerprint(options: SearchOptions, space: Space) -> dict[str, Any]:
    return {"task": options.task, "training": {k: options.training[k] for k in sorted(options.training)},
            "space": space.describe()}


def open_study(options: SearchOptions, space: Space, constraint_count: int) -> Any:
    import optuna

    database = options.output / "study.db"
    if not options.shared_storage and options.storage is None:
        if database.exists() and not options.resume:
            raise SearchError(f"--output {options.output} already holds a search (study.db): --resume continues "
                              "it, or choose another --output")
        if options.resume and not database.exists():
            raise SearchError(f"--resume: no search in {options.output} to continue (no study.db)")
    if options.shared_storage:  # reached before anything is written
        storage = _storage(options)
        options.output.mkdir(parents=True, exist_ok=True)
    else:
        options.output.mkdir(parents=True, exist_ok=True)
        storage = _storage(options)

    def constraints(trial: Any) -> list[float]:
        values = trial.user_attrs.get("constraints")
        return list(values) if values is not None else [1.0] * constraint_count

    sampler = optuna.samplers.TPESampler(
        seed=None if options.shared_storage else int(options.training.get("seed", 42)),
        multivariate=True, group=True, n_startup_trials=max(2, min(10, options.trials // 2)),
        constraints_func=constraints if constraint_count else None)
    names = optuna.get_all_study_names(storage)
    if options.resume and not options.shared_storage and options.study_name not in names:
        raise SearchError(f"--resume: no study {options.study_name!r} in {options.storage_url()}")
    study = optuna.create_study(storage=storage, study_name=options.study_name, sampler=sampler,
                                directions=["maximize", "minimize"], load_if_exists=True)
    fingerprint = _fingerprint(options, space)
    earlier = study.user_attrs.get("search")
    if earlier is None:
        study.set_user_attr("search", fingerprint)
    elif earlier != fingerprint:
        changed = next(key for key in fingerprint if fingerprint[key] != earlier.get(key))
        raise SearchError(f"the study in {options.storage_url()} was started with another {changed} "
                          f"({earlier.get(changed)!r}); continue it with the same options or choose another "
                          "--output / --study-name")
    return study


def _recover(study: Any, shared: bool) -> int:
    """Trials an interrupted run left behind (running when it was killed, or failed by Ctrl-C) are queued again
    with the same choice, once each; returns how many. With shared storage a running trial may be another
    worker's, alive: Optuna's heartbeat decides instead."""
    from optuna.trial import TrialState

    storage, again = study._storage, 0  # Optuna has no public call to fail a trial left running by a dead process
    retried = set(study.user_attrs.get("retried", []))
    for trial in study.get_trials(deepcopy=False):
        if trial.number in retried or "choice" not in trial.user_attrs:
            continue
        if trial.state == TrialState.RUNNING and not shared:
            storage.set_trial_user_attr(trial._trial_id, "reason", INTERRUPTED)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        elif not (trial.state == TrialState.FAIL and "reason" not in trial.user_attrs):
            continue
        attrs = {"retry_of": trial.number, "default": bool(trial.user_attrs.get("default"))}
        study.enqueue_trial(dict(trial.params), user_attrs=attrs)
        retried.add(trial.number)
        again += 1
    study.set_user_attr("retried", sorted(retried))
    return again


@contextlib.contextmanager
def _trial_log(path: Path) -> Iterator[None]:
    """A trial's training and export output go to its log; the search's table stays on the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def _items(options: SearchOptions) -> list[Any]:
    """What the measurer sends: the bundled reviews (text), images of the data (images), review prompts."""
    from tuneship.client import builtin_reviews, review_prompts
    from tuneship.tasks import task

    served = task(options.task)
    if served.item_source == "images":
        from tuneship.trainer.image.data import load_images

        data = load_images(str(options.training.get("data") or "faces"),
                           str(options.training.get("image_column", "image")),
                           str(options.training.get("label_column", "label")))
        return [example.read() for example in data.examples[:64]]
    if not served.classifies:  # a generator: prompts asking about the reviews
        return list(review_prompts(builtin_reviews()))
    return builtin_reviews()


def _default_measurer(options: SearchOptions, space: Space) -> Measurer:
    return TritonMeasurer(options.output / "repository", _items(options), options.concurrency, options.window_s)


def _preflight(options: SearchOptions) -> None:
    """The data options are checked once, before any trial (a bad one would fail every trial)."""
    from tuneship.trainer import DataError
    from tuneship.trainer.config import check_task_options, config_class, validate_config

    unknown = sorted(set(options.training) - set(DATA_OPTIONS))
    if unknown:
        raise SearchError(f"--{unknown[0].replace('_', '-')}: not a data option; the search space sets it")
    try:
        check_task_options(options.task, options.training, "tuneship search")
        validate_config(config_class(options.task)(**options.training))
    except DataError as error:
        raise SearchError(str(error)) from None
    for name in ("data", "eval_file"):
        value = options.training.get(name)
        if value and ("/" in str(value) or "." in Path(str(value)).name) and not Path(str(value)).exists():
            raise SearchError(f"--{name.replace('_', '-')} {value}: file not found")


def _cleanup(options: SearchOptions, rows: list[Row]) -> None:
    """Checkpoints and models of trials off the front go (a dominated trial stays dominated); logs stay."""
    if options.keep_all:
        return
    kept = {r.number for r in front(rows)}
    for row in rows:
        if row.number in kept or row.state == "running":
            continue
        folder = options.output / "trials" / f"{row.number:03d}"
        shutil.rmtree(folder / "checkpoint", ignore_errors=True)
        shutil.rmtree(folder / ".checkpoint.work", ignore_errors=True)  # a pruned trial's Trainer checkpoints
        for path in (options.output / "repository").glob(f"trial-{row.number:03d}*"):
            shutil.rmtree(path, ignore_errors=True)


MEDIAN = MedianRule()


def search(options: SearchOptions, measurer: MeasurerFactory = _default_measurer,
           rule: MedianRule = MEDIAN) -> SearchReport:
    import optuna
    from tqdm import tqdm

    from tuneship.search.models import base_models
    from tuneship.search.space import task_space
    from tuneship.trainer import DataError
    from tuneship.trainer.config import TASK_DEFAULTS

    _preflight(options)
    base = task_space(options.task)
    models = base_models(options, base, TASK_DEFAULTS[options.task].model)
    space = resolve(options, models)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are rows of the table, their traces in logs
    constraint_count = len(constraint_values(options, {"p99_ms": 0, "size_mb": 0, "quality": 0}))
    study = open_study(options, space, constraint_count)
    again = _recover(study, options.shared_storage) if options.resume or options.shared_storage else 0
    if not study.trials:  # the first trial is what a user gets without searching: the front is compared with it
        study.enqueue_trial({}, user_attrs={"default": True})
    used = sum(_counts(t) for t in study.get_trials(deepcopy=False))
    print(f"searching {options.task}: {options.trials} trials ({used} done" + (f", {again} to run again" if again
          else "") + f"), constraints: {constraints_text(options)}")
    for line in space.describe():
        print(f"  {line}")
    print(f"study: {options.storage_url()} ({options.study_name}); trial logs in {options.output / 'trials'}")
    print(HEADER, flush=True)
    measure = measurer(options, space)
    bar = tqdm(total=options.trials, initial=min(used, options.trials), desc="trials", unit="trial",
               file=sys.stderr, dynamic_ncols=True, disable=None)

    def budget_used(excluding: int) -> int:
        trials = study.get_trials(deepcopy=False)
        return sum(_counts(t) or (t.state.name == "RUNNING" and t.number != excluding) for t in trials
                   if t.number != excluding)

    def objective(trial: Any) -> tuple[float, float]:
        if budget_used(trial.number) >= options.trials:
            trial.set_user_attr("reason", OVER_BUDGET)
            study.stop()
            raise _Skip()
        default = bool(trial.user_attrs.get("default"))
        chosen = default_choice(space) if default else suggest(trial, space)
        trial.set_user_attr("choice", chosen)
        curve: dict[str, float] = {}

        def report(quarter: int, value: float) -> bool:
            curve[str(quarter)] = value
            trial.set_user_attr("curve", dict(curve))
            if not options.prune or default:
                return False
            finished = [{int(k): float(v) for k, v in t.user_attrs.get("curve", {}).items()}
                        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
            return rule.prune(quarter, value, finished)

        folder = options.output / "trials" / f"{trial.number:03d}"
        try:
            with _trial_log(folder / "log.txt"):
                outcome = run_trial(options, space, chosen, folder, f"trial-{trial.number:03d}", measure, report)
        except TrialPruned as pruned:
            trial.set_user_attr("reason", f"pruned: {pruned}")
            raise optuna.TrialPruned(str(pruned)) from None
        except TrialFailed as error:
            trial.set_user_attr("reason", str(error))
            with open(folder / "log.txt", "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
            raise
        except (DataError, SearchError, KeyboardInterrupt):
            raise
        except Exception as error:  # out of memory, a library's own failure: this trial's, not the search's
            trial.set_user_attr("reason", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                                if str(error) else type(error).__name__)
            with open(folder / "log.txt", "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
            raise TrialFailed(str(error)) from error
        trial.set_user_attr("outcome", outcome.attrs())
        trial.set_user_attr("constraints", constraint_values(options, outcome.attrs()))
        return outcome.quality, outcome.p99_ms

    def finished(study: Any, trial: Any) -> None:
        rows = rows_of(study.get_trials(deepcopy=False))
        on_front = {r.number for r in front(rows)}
        row = next((r for r in rows if r.number == trial.number), None)
        if row is not None:
            bar.write(table_row(row, row.number in on_front), file=sys.stdout)
            sys.stdout.flush()
        write_results(options, rows, space.quality)
        done = sum(_counts(t) for t in study.get_trials(deepcopy=False))
        bar.update(max(0, min(done, options.trials) - bar.n))
        if bar.disable:  # not a terminal (a log): the bar's figures as a line
            elapsed = time.monotonic() - started
            ran = max(1, done - used)
            eta = elapsed / ran * max(0, options.trials - done)
            print(f"      {done}/{options.trials} trials, {elapsed / 60:.1f} min so far, about {eta / 60:.1f} min "
                  "to go", flush=True)
        if done >= options.trials:
            study.stop()

    started = time.monotonic()
    try:
        if used < options.trials:
            study.optimize(objective, timeout=options.timeout_s, catch=(TrialFailed, _Skip), callbacks=[finished])
    except DataError as error:
        raise SearchError(str(error)) from None
    finally:
        bar.close()
        measure.close()
        rows = rows_of(study.get_trials(deepcopy=False))
        if rows:
            write_results(options, rows, space.quality)
    _cleanup(options, rows)
    png = plot(options, rows, space.quality)
    kept = front(rows)
    print(f"\n{len(rows)} trials in {time.monotonic() - started:.0f}s this run: "
          + ", ".join(f"{sum(r.state == s for r in rows)} {s}" for s in ("complete", "pruned", "fail")))
    if kept:
        print(f"front ({len(kept)} trials, most accurate first):")
        for row in kept:
            print(table_row(row, True))
    elif any(r.complete for r in rows):
        print(f"no trial meets the constraints ({constraints_text(options)}); the closest:")
        for row in closest(rows):
            print(table_row(row))
    print(f"wrote {options.output / 'pareto.json'}, {options.output / 'trials.csv'}"
          + (f", {png}" if png else ""))
    return SearchReport(rows=rows, front=kept, quality=space.quality, png=png)
