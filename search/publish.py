"""Publishing a search's pick: the most accurate trial inside the constraints, through the export gate, as any
checkpoint is published (`tuneship export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.search.options import SearchError, SearchOptions
from tuneship.search.report import Row, closest, constraint_values, constraints_text, front, table_row


def pick(options: SearchOptions, rows: list[Row]) -> Row:
    """The best feasible trial whose checkpoint is still there, under this run's constraints."""
    rescored = [Row(r.number, r.state, r.default, r.choice, r.outcome, r.reason,
                    constraint_values(options, r.outcome) if r.complete else r.constraints) for r in rows]
    kept = front(rescored)
    if not kept:
        near = "; ".join(table_row(r).strip() for r in closest(rescored)) or "no trial finished"
        raise SearchError(f"no trial meets the constraints ({constraints_text(options)}); the closest: {near}")
    for row in kept:
        if Path(str(row.outcome.get("checkpoint", ""))).is_dir():
            return row
    raise SearchError(f"trial {kept[0].number} is the pick but its checkpoint is gone (only the front's are kept; "
                      "--keep-all keeps every trial's)")


def publish(options: SearchOptions, row: Row) -> Any:
    from tuneship.exporter import export_checkpoint
    from tuneship.repository import RepositoryError
    from tuneship.tasks import load
    from tuneship.tasks import task as task_row

    options_class = load(task_row(options.task).export_options)
    export = options_class(checkpoint=Path(str(row.outcome["checkpoint"])), name=options.name,
                           repository=options.repository, precision=str(row.choice.get("precision", "auto")))
    print(f"publishing trial {row.number} ({row.choice.get('method')}, quality {row.quality:.4f}, "
          f"p99 {row.p99_ms:.1f} ms) as {options.name} in {options.repository}")
    try:
        return export_checkpoint(export)
    except RepositoryError as error:  # ExportError is one
        raise SearchError(f"--publish: trial {row.number}: {error}") from None


def rows_from(options: SearchOptions, folder: Path) -> list[Row]:
    """A finished search's trials, read from its study (its --storage, or the SQLite file in `folder`)."""
    import optuna

    from tuneship.search.report import rows_of

    url = options.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    if options.storage is None and not (folder / "study.db").is_file():
        raise SearchError(f"--publish-from {folder}: no search there (no study.db)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=options.study_name, storage=url)
    except KeyError:
        raise SearchError(f"--publish-from {folder}: no study {options.study_name!r} in {url}") from None
    rows = rows_of(study.get_trials(deepcopy=False))
    task = study.user_attrs.get("search", {}).get("task")
    if task and task != options.task:
        options.training["task"] = task
    return rows
