"""The space one search runs over: the task's default (tuneship.space, declared in the task's folder), narrowed by
--method, overridden by a space file, with the base models to try; and a trial's choice in it, define-by-run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.search.options import DATA_OPTIONS, SearchError, SearchOptions
from tuneship.space import Choice, Dimension, Floats, Ints, TaskSpace, dimension

FILE_KEYS = ("methods", "precisions", "layouts")


@dataclass(frozen=True)
class Space:
    task: str
    methods: Mapping[str, Mapping[str, Dimension]]
    precisions: tuple[str, ...]
    layouts: tuple[str, ...]
    models: Mapping[str, str]
    """Label shown in tables -> what training takes as --model (a built-in name or a folder)."""
    default: Mapping[str, Any]
    quality: str
    fixed: Mapping[str, Any]

    def describe(self) -> list[str]:
        lines = [f"models: {', '.join(self.models)}", f"precisions: {', '.join(self.precisions)}"]
        if self.layouts:
            lines.append(f"layouts: {', '.join(self.layouts)}")
        for method, options in self.methods.items():
            ranges = ", ".join(f"{name} {dim.describe()}" for name, dim in options.items())
            lines.append(f"{method}: {ranges or '(its defaults)'}")
        return lines


def task_space(task: str) -> TaskSpace:
    from tuneship.tasks import UnknownTaskError, load
    from tuneship.tasks import task as task_row

    try:
        row = task_row(task)
    except UnknownTaskError as error:
        raise SearchError(f"--task: {error}") from None
    if not row.search_space:
        raise SearchError(f"--task {task}: no search space is declared for it")
    space: TaskSpace = load(row.search_space)
    return space


def _method_options(task: str) -> dict[str, tuple[str, ...]]:
    from tuneship.trainer.config import TASK_METHOD_OPTIONS

    return {method: tuple(name for name in names if name not in DATA_OPTIONS and name != "method")
            for method, names in TASK_METHOD_OPTIONS[task].items()}


def _refuse_option(task: str, method: str, name: str, where: str) -> SearchError:
    from tuneship.trainer.config import TASK_METHOD_OPTIONS, TASKS

    own = _method_options(task)
    methods = [m for m, names in own.items() if name in names]
    if methods:
        return SearchError(f"{where}: {name} is an option of {' and '.join(methods)}, not of {method}")
    if name in DATA_OPTIONS or name == "model":
        return SearchError(f"{where}: {name} is the same for every trial; give it on the command line "
                           f"(--{name.replace('_', '-')})")
    tasks = [t for t in TASKS if t != task and any(name in names for names in TASK_METHOD_OPTIONS[t].values())]
    if tasks:
        return SearchError(f"{where}: {name} is an option of {' and '.join(tasks)} training, not of --task {task}")
    return SearchError(f"{where}: unknown option {name!r} for {method} (its options: {', '.join(own[method])})")


def read_space_file(path: Path) -> dict[str, Any]:
    from tuneship.mapping_files import MappingFileError, read_mapping

    try:
        return read_mapping(path, "space")
    except MappingFileError as error:
        raise SearchError(f"--space {error}") from None


def apply_space_file(base: TaskSpace, raw: Mapping[str, Any], where: str) -> tuple[dict[str, dict[str, Dimension]],
                                                                                      tuple[str, ...], tuple[str, ...]]:
    """The methods (with their ranges) and precisions once a space file's entries replace the defaults; an entry
    of another method or task is refused, naming it."""
    from tuneship.trainer.config import TASK_DEFAULTS

    task = base.task
    allowed_methods = TASK_DEFAULTS[task].methods
    methods = {name: dict(options) for name, options in base.methods.items()}
    if "methods" in raw:
        listed = raw["methods"] if isinstance(raw["methods"], list) else [raw["methods"]]
        for name in listed:
            if name not in allowed_methods:
                raise SearchError(f"{where}: methods: {name!r} is not a method of --task {task} "
                                  f"(its methods: {', '.join(allowed_methods)})")
        methods = {name: methods.get(name, {}) for name in listed}
    precisions = base.precisions
    if "precisions" in raw:
        listed = raw["precisions"] if isinstance(raw["precisions"], list) else [raw["precisions"]]
        allowed = {*base.precisions, "fp32", "auto"}
        for name in listed:
            if name not in allowed:
                raise SearchError(f"{where}: precisions: {name!r} is not a precision --task {task} exports on a "
                                  f"CPU (choose from {', '.join(sorted(allowed))})")
        precisions = tuple(listed)
    layouts = base.layouts
    if "layouts" in raw:
        listed = raw["layouts"] if isinstance(raw["layouts"], list) else [raw["layouts"]]
        for name in listed:
            if name not in base.layouts:
                raise SearchError(f"{where}: layouts: {name!r} is not a layout --task {task} is served in "
                                  f"(choose from {', '.join(base.layouts) or 'none: it has one'})")
        layouts = tuple(listed)
    for key, entries in raw.items():
        if key in FILE_KEYS:
            continue
        if key not in allowed_methods:
            others = [t for t, d in TASK_DEFAULTS.items() if key in d.methods]
            what = (f"{key!r} is a method of {' and '.join(others)}, not of --task {task}" if others
                    else f"unknown entry {key!r} (methods, precisions, or one of {', '.join(allowed_methods)})")
            raise SearchError(f"{where}: {what}")
        if key not in methods:
            if "methods" in raw:
                raise SearchError(f"{where}: {key} has ranges but is not in methods: {raw['methods']}")
            methods[key] = {}
        if not isinstance(entries, Mapping):
            raise SearchError(f"{where}: {key}: expected option: range entries, got {entries!r}")
        own = _method_options(task)[key]
        for name, value in entries.items():
            option = str(name).replace("-", "_")
            if option not in own:
                raise _refuse_option(task, key, option, f"{where}: {key}")
            try:
                methods[key][option] = dimension(value, f"{where}: {key}.{option}")
            except ValueError as error:
                raise SearchError(str(error)) from None
    return methods, precisions, layouts


def resolve(options: SearchOptions, models: Mapping[str, str]) -> Space:
    base = task_space(options.task)
    methods, precisions, layouts = {k: dict(v) for k, v in base.methods.items()}, base.precisions, base.layouts
    if options.space is not None:
        methods, precisions, layouts = apply_space_file(base, read_space_file(options.space),
                                                        f"--space {options.space}")
    if options.methods:
        unknown = [m for m in options.methods if m not in methods]
        if unknown:
            raise SearchError(f"--method {unknown[0]}: not in the space (its methods: {', '.join(methods)})")
        methods = {m: methods[m] for m in options.methods}
    if not methods:
        raise SearchError("the space has no method to try")
    if not precisions:
        raise SearchError("the space has no precision to export at")
    return Space(task=base.task, methods=methods, precisions=precisions, layouts=layouts, models=models,
                 default=base.default,
                 quality=base.quality, fixed=base.fixed)


def _suggest(trial: Any, key: str, dim: Dimension) -> Any:
    if isinstance(dim, Floats):
        return trial.suggest_float(key, dim.low, dim.high, log=dim.log)
    if isinstance(dim, Ints):
        return trial.suggest_int(key, dim.low, dim.high, log=dim.log)
    if isinstance(dim, Choice) and len(dim.options) == 1:
        return dim.options[0]
    return trial.suggest_categorical(key, list(dim.options))


def suggest(trial: Any, space: Space) -> dict[str, Any]:
    """A trial's choice, define-by-run: the base model, the method, then that method's options (named
    `method.option`, so methods with the same option keep their own ranges), then the export precision and the
    served layout."""
    labels = list(space.models)
    chosen: dict[str, Any] = {"model": labels[0] if len(labels) == 1 else trial.suggest_categorical("model", labels)}
    methods = list(space.methods)
    method = methods[0] if len(methods) == 1 else trial.suggest_categorical("method", methods)
    chosen["method"] = method
    for name, dim in space.methods[method].items():
        chosen[name] = _suggest(trial, f"{method}.{name}", dim)
    precisions = list(space.precisions)
    chosen["precision"] = precisions[0] if len(precisions) == 1 else trial.suggest_categorical("precision",
                                                                                                precisions)
    if len(space.layouts) > 1:
        chosen["layout"] = trial.suggest_categorical("layout", list(space.layouts))
    elif space.layouts:
        chosen["layout"] = space.layouts[0]
    return chosen


def default_choice(space: Space) -> dict[str, Any]:
    """The configuration a user gets without a search (the first model, the training and export defaults)."""
    return {"model": next(iter(space.models)), **space.default}
