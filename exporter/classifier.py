"""What the text and image classifiers' exports share on top of the run: their report, the labels check, the
accuracy gate and choice among ONNX variants, the reference behaviour of the published one and the variants kept
for `tuneship tune`. Each classifier's export fills the rest (loading, building, measuring, publishing)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tuneship.exporter.errors import ExportError
from tuneship.exporter.options import ClassifierExportOptions
from tuneship.exporter.publishing import check_label_change, keep_variants
from tuneship.exporter.quality import reference_behaviour
from tuneship.exporter.run import ExportRunReport, TaskExport
from tuneship.exporter.selection import VariantReport, apply_gate, choose, format_table
from tuneship.exporter.timing import MEASURED, Timing
from tuneship.exporter.validation import ValidationResult
from tuneship.exporter.variants import CALIBRATION_METHODS, Variant


@dataclass
class ExportReport(ExportRunReport):
    validation: dict[str, Any]
    eval_accuracy: float | None
    onnx_size_bytes: int
    latency_ms: dict[str, float]
    input_names: list[str]
    reference: dict[str, Any] | None = None  # the published variant's behaviour on the gate texts
    checkpoint: str = ""  # where the published model came from (tuneship update continues from it)
    layout: str = "ensemble"  # how it was published, for the reader (the tools read the configs themselves)


def gate_and_choose(reports: list[VariantReport], options: ClassifierExportOptions) -> tuple[VariantReport, str]:
    """The accuracy gate against the first (fp32) variant, then the choice; the table is printed either way,
    and a choice that cannot be made is an ExportError saying why nothing was published."""
    apply_gate(reports, reports[0], options.accuracy_threshold, options.tolerance)
    try:
        chosen, reason = choose(reports, options.precision, options.target, options.force, options.speed_margin,
                                options.invariance_margin)
    except ValueError as error:
        print(format_table(reports, chosen=""))
        raise ExportError(f"not published: {error}") from None
    print(format_table(reports, chosen.name))
    return chosen, reason


ClassifierOptionsT = TypeVar("ClassifierOptionsT", bound=ClassifierExportOptions)


class ClassifierExport(TaskExport[ClassifierOptionsT, Variant, VariantReport]):
    """A classifier's export. Subclasses set `labels`, `validation`, `input_names` and `gate_ids` while loading
    and building, and `gate_logits[variant]` while measuring (the published one's become its reference)."""

    precisions: tuple[str, ...] = ("auto", "fp32", "fp16", "int8")
    labels: list[str]
    validation: ValidationResult
    input_names: list[str]
    gate_ids: list[int] | None

    def __init__(self, options: ClassifierOptionsT, timing: Timing = MEASURED) -> None:
        super().__init__(options, timing)
        self.gate_logits: dict[str, np.ndarray[Any, Any]] = {}
        self.behaviour: dict[str, Any] | None = None
        self.checkpoint_path = Path(options.checkpoint)

    def check_options(self) -> None:
        options = self.options
        if options.precision not in self.precisions:
            raise ExportError(f"--precision {options.precision} is not available for {self.task_name}s; choose one of "
                              f"{', '.join(self.precisions)}")
        if options.calibration not in CALIBRATION_METHODS:
            raise ExportError(f"unknown --calibration {options.calibration!r}; choose one of "
                              f"{', '.join(CALIBRATION_METHODS)}")

    @property
    def task_name(self) -> str:
        return "classifier"

    def check_repository(self) -> None:
        check_label_change(self.options.repository, self.name, self.labels, self.options.allow_label_change)

    def choose(self, reports: list[VariantReport]) -> tuple[VariantReport, str]:
        return gate_and_choose(reports, self.options)

    def reference_of(self, chosen: VariantReport) -> dict[str, Any] | None:
        """The chosen variant's behaviour on the gate examples, served as the baseline for drift."""
        if chosen.name not in self.gate_logits:
            return None
        self.behaviour = reference_behaviour(self.gate_logits[chosen.name], self.labels, self.gate_ids)
        return self.behaviour

    def keep(self, versions: dict[str, int], variants: list[Variant], reports: list[VariantReport]) -> None:
        keep_variants(self.options.repository, self.name, versions[self.name], variants, reports)

    def report(self, versions: dict[str, int], chosen: VariantReport, reason: str,
               reports: list[VariantReport]) -> ExportReport:
        options = self.options
        return ExportReport(
            name=self.name, repository=str(options.repository), versions=versions, target=options.target,
            chosen=chosen.name, reason=reason, variants=[asdict(r) for r in reports],
            validation=asdict(self.validation), eval_accuracy=chosen.accuracy, onnx_size_bytes=chosen.size_bytes,
            latency_ms=chosen.latency_ms, input_names=self.input_names, reference=self.behaviour,
            checkpoint=str(self.checkpoint_path.resolve()), layout=options.serving.layout)
