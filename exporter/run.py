"""The export run every task shares, with per-task hooks (as transformers' pipelines fill preprocess / forward /
postprocess on one base): check the options, load the checkpoint, check the repository, build and validate the
variants in a scratch folder, measure them, gate and choose, then under the repository's lock check again, publish,
keep variants where asked and write the report beside the model. A task's export fills the hooks in its own folder
(text/export.py, image/export.py, instruct/export.py); nothing here knows a task.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tuneship.exporter.errors import ExportError
from tuneship.exporter.options import ExportOptions
from tuneship.exporter.timing import MEASURED, Timing
from tuneship.progress import step
from tuneship.repository import REPORT_FILE, check_model_name, repository_lock, write_text_atomic


@dataclass
class ExportRunReport:
    """What every export's report says (`export_report.json` beside the model); each task adds its figures."""

    name: str
    repository: str
    versions: dict[str, int]
    target: str
    chosen: str
    reason: str
    variants: list[dict[str, Any]]

    def describe(self) -> str:
        return (f"published {self.chosen} for {self.target} as {self.name} in {self.repository}: "
                + ", ".join(f"{m} v{v}" for m, v in self.versions.items()) + f"\nwhy: {self.reason}")


class Named(Protocol):
    name: str


class Report(Protocol):
    def describe(self) -> str: ...


OptionsT = TypeVar("OptionsT", bound=ExportOptions)
VariantT = TypeVar("VariantT", bound=Named)
MeasuredT = TypeVar("MeasuredT", bound=Named)


class TaskExport(ABC, Generic[OptionsT, VariantT, MeasuredT]):
    """One task's part of the export run. `options_class` is the task's options; the run calls the hooks in the
    order they are declared."""

    options_class: type[ExportOptions] = ExportOptions

    def __init__(self, options: OptionsT, timing: Timing = MEASURED) -> None:
        self.options = options
        self.timing = timing
        self.name = check_model_name(options.name)

    @classmethod
    def create(cls, options: Any, timing: Timing = MEASURED) -> TaskExport[Any, Any, Any]:
        """The export for these options (a task may hand some of them to another export of its own)."""
        return cls(options, timing)

    @property
    def source(self) -> Path:
        """What is exported (named in the lock file while it is published)."""
        return Path(self.options.checkpoint)

    def publishes(self) -> str:
        return f"the next version of {self.name}"

    def report_path(self) -> Path:
        return Path(self.options.repository) / self.name / REPORT_FILE

    @abstractmethod
    def check_options(self) -> None:
        """Refuse options this task cannot honour (a precision it has no variant of) before any work."""

    @abstractmethod
    def load(self) -> None:
        """Read the checkpoint (an ExportError names what is wrong with it)."""

    def check_repository(self) -> None:
        """Refuse a publication that would surprise callers (other labels, another layout); run before building
        and again under the lock, since another writer may have published meanwhile."""

    @abstractmethod
    def build(self, workdir: Path) -> list[VariantT]:
        """The variants, in `workdir`, the first validated against PyTorch (an ExportError if it differs)."""

    @abstractmethod
    def measure(self, variants: list[VariantT]) -> list[MeasuredT]:
        """Each variant's accuracy and speed, the first (the reference) first."""

    @abstractmethod
    def choose(self, reports: list[MeasuredT]) -> tuple[MeasuredT, str]:
        """The accuracy gate and the choice, with the reason; an ExportError saying why nothing is published."""

    @abstractmethod
    def publish(self, variant: VariantT, chosen: MeasuredT) -> dict[str, int]:
        """The chosen variant as the next version of every model of the task's layout; the versions written."""

    def keep(self, versions: dict[str, int], variants: list[VariantT], reports: list[MeasuredT]) -> None:
        """--keep-variants: keep what passed the gate beside the published version."""

    @abstractmethod
    def report(self, versions: dict[str, int], chosen: MeasuredT, reason: str, reports: list[MeasuredT]) -> Any:
        """The export report (a dataclass with describe()), written beside the model."""


def run_export(export: TaskExport[Any, Any, Any]) -> Any:
    """Run a task's export: nothing is left in the repository unless every step passed."""
    options = export.options
    export.check_options()
    export.load()
    export.check_repository()
    options.repository.mkdir(parents=True, exist_ok=True)
    # Not inside the repository: Triton takes every top-level folder there for a model, and a killed export's
    # leftover would stop the server starting.
    workdir = Path(tempfile.mkdtemp(prefix="tuneship-export-"))
    try:
        variants = export.build(workdir)
        reports = export.measure(variants)
        chosen, reason = export.choose(reports)
        variant = next(v for v in variants if v.name == chosen.name)
        # One writer at a time: another export or publish into this repository finishes first.
        with repository_lock(options.repository, options.lock_timeout_s, f"tuneship export of {export.source}"):
            export.check_repository()
            with step(f"publishing {chosen.name} as {export.publishes()} in {options.repository}"):
                versions = export.publish(variant, chosen)
            if options.keep_variants:
                with step(f"keeping the variants that passed the gate beside {export.name} "
                          f"v{versions[export.name]}"):
                    export.keep(versions, variants, reports)
            report = export.report(versions, chosen, reason, reports)
            report_path = export.report_path()
            write_text_atomic(report_path, json.dumps(asdict(report), indent=2) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report.describe())
    print(f"report: {report_path}")
    return report


def as_task_options(options: ExportOptions, wanted: type[ExportOptions], task: str) -> ExportOptions:
    """`options` as the task's options class: common options take the task's defaults for the rest; another
    task's options are refused, naming both."""
    if isinstance(options, wanted):
        return options
    if type(options) is ExportOptions:
        return wanted(**{spec.name: getattr(options, spec.name) for spec in fields(ExportOptions)})
    raise ExportError(f"{options.checkpoint}: a {task} checkpoint is exported with {wanted.__name__}, not "
                      f"{type(options).__name__}")
