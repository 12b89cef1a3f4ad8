"""`tuneship export`: checkpoint -> validated ONNX variants -> the four models of a Triton text classifier."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneship.exporter.build import build_variants, tensorrt_variants
from tuneship.exporter.errors import ExportError
from tuneship.exporter.instruct.publishing import GenerationServing
from tuneship.exporter.layout import check_layout
from tuneship.exporter.locking import repository_lock
from tuneship.exporter.model_configs import ServingOptions
from tuneship.exporter.onnx_export import export_onnx
from tuneship.exporter.publishing import check_label_change, keep_variants, publish_models
from tuneship.exporter.quality import reference_behaviour
from tuneship.exporter.repository import check_model_name, write_text_atomic
from tuneship.exporter.selection import (
    VariantReport,
    apply_gate,
    choose,
    format_table,
    measure,
    time_interleaved,
    unmeasured,
)
from tuneship.exporter.texts import FALLBACK_TEXTS, read_jsonl
from tuneship.exporter.validation import ValidationResult, torch_logits, validate
from tuneship.exporter.variants import CALIBRATION_METHODS
from tuneship.progress import step

PRECISIONS = ("auto", "fp32", "fp16", "int8", "int4")
TARGETS = ("cpu", "gpu")


@dataclass
class ExportOptions:
    checkpoint: Path = field(metadata={"help": "checkpoint directory written by `tuneship train`"})
    name: str = field(default="sentiment", metadata={"help": "Triton model name of the ensemble"})
    repository: Path = field(default=Path("model_repository"), metadata={"help": "Triton model repository"})
    opset: int = field(default=17, metadata={"help": "ONNX opset"})
    tolerance: float = field(default=1e-3, metadata={"help": "largest allowed fp32 |logit difference| vs PyTorch"})
    validation_texts: int = field(default=256, metadata={"help": "held-out texts used for numerical validation"})
    precision: str = field(default="auto", metadata={
        "help": "auto (fastest variant that passes the gate on CPU, fp16 on GPU), fp32, fp16 or int8"})
    target: str = field(default="cpu", metadata={"help": "cpu or gpu: where Triton will run the model"})
    optimize: bool = field(default=True, metadata={"help": "apply ONNX Runtime transformer fusions"})
    remove_padding: bool = field(default=True, metadata={
        "help": "CPU: run token-wise operators on real tokens only (exporter/token_packing.py)"})
    int8_modes: tuple[str, ...] = field(default=("dynamic", "rowwise"), metadata={
        "help": "int8 flavours to try: dynamic (one activation scale per batch: fastest, answers move with "
                "batch-mates), rowwise (activation scales per token: batch-invariant) and static (QDQ, calibrated on "
                "training texts; on CPU slower and less accurate than dynamic for these encoders, so opt-in)"})
    per_channel: bool = field(default=True, metadata={"help": "int8: per-channel weight scales"})
    accuracy_threshold: float = field(default=1.0, metadata={
        "help": "largest allowed eval-accuracy drop (points) of a non-fp32 variant vs fp32"})
    gate_samples: int = field(default=1000, metadata={"help": "eval texts used by the accuracy gate"})
    calibration_samples: int = field(default=128, metadata={"help": "training texts used to calibrate static int8"})
    calibration: str = field(default="percentile", metadata={
        "help": "static int8 activation ranges: percentile (99.99th, default), minmax or entropy"})
    int4_method: str = field(default="k_quant", metadata={
        "help": "instruct int4: onnxruntime-genai's quantization method (k_quant; k_quant_mixed keeps sensitive "
                "layers int8)"})
    speed_margin: float = field(default=0.05, metadata={
        "help": "auto: variants timed within this share of the fastest are a tie, taken by accuracy"})
    invariance_margin: float = field(default=0.10, metadata={
        "help": "a batch-invariant variant is taken over a faster one that is not, up to this share slower"})
    force: bool = field(default=False, metadata={"help": "publish the requested precision even if it fails the gate"})
    allow_label_change: bool = field(default=False, metadata={
        "help": "publish even if the model already in the repository has other labels"})
    lock_timeout_s: float = field(default=600.0, metadata={
        "help": "how long to wait for another export or publish into the same repository (0: fail at once)"})
    keep: int | None = field(default=3, metadata={"help": "keep only the newest N versions of each model"})
    keep_variants: bool = field(default=False, metadata={
        "help": "keep every ONNX variant that passed the gate beside the published version, for tuneship tune"})
    engine_opt_batch: int | None = field(default=None, metadata={
        "help": "TensorRT profile: the batch size kernels are tuned for (default: half of max batch)"})
    engine_opt_sequence: int | None = field(default=None, metadata={
        "help": "TensorRT profile: the sequence length kernels are tuned for (default: half of max length)"})
    engine_workspace_bytes: int = field(default=1 << 30, metadata={"help": "TensorRT builder workspace"})
    serving: ServingOptions = field(default_factory=ServingOptions)
    generation: GenerationServing = field(default_factory=GenerationServing)


@dataclass
class ExportReport:
    name: str
    repository: str
    versions: dict[str, int]
    target: str
    chosen: str
    reason: str
    variants: list[dict[str, Any]]
    validation: dict[str, Any]
    eval_accuracy: float | None
    onnx_size_bytes: int
    latency_ms: dict[str, float]
    input_names: list[str]
    reference: dict[str, Any] | None = None  # the published variant's behaviour on the gate texts
    checkpoint: str = ""  # where the published model came from (tuneship update continues from it)
    layout: str = "ensemble"  # how it was published, for the reader (the tools read the configs themselves)

    def describe(self) -> str:
        return (f"published {self.chosen} for {self.target} as {self.name} in {self.repository}: "
                + ", ".join(f"{m} v{v}" for m, v in self.versions.items()) + f"\nwhy: {self.reason}")


def export_checkpoint(options: ExportOptions) -> Any:
    """Export any checkpoint, by the exporter of its task (the manifest's `task`)."""
    from tuneship.exporter.tasks import exported_task, task_exporter
    from tuneship.trainer import TrainingError, read_checkpoint

    try:
        task = str(read_checkpoint(Path(options.checkpoint)).manifest["task"])
    except TrainingError as error:
        raise ExportError(str(error)) from None
    if options.serving.layout not in exported_task(task).layouts:
        raise ExportError(f"{options.checkpoint}: --layout {options.serving.layout} is for text classifiers; a "
                          f"{task} checkpoint is published in its own layout (leave --layout out)")
    if options.serving.layout == "single" and options.target != "cpu":
        raise ExportError("--layout single runs the graph in ONNX Runtime on the CPU inside a Python model; for "
                          f"--target {options.target} use the ensemble layout (leave --layout out)")
    return task_exporter(task)(options)


def export_text_classifier(options: ExportOptions) -> ExportReport:
    """Checkpoint -> validated ONNX variants -> the four models of a Triton text classifier."""
    from tuneship.trainer import ARCHITECTURES, TrainingError, architecture, load_classifier

    name = check_model_name(options.name)
    if options.precision == "int4":
        raise ExportError("--precision int4 is for instruct checkpoints; a text classifier takes fp32, fp16 or int8")
    if options.precision not in PRECISIONS:
        raise ExportError(f"unknown --precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if options.calibration not in CALIBRATION_METHODS:
        raise ExportError(f"unknown --calibration {options.calibration!r}; choose one of "
                          f"{', '.join(CALIBRATION_METHODS)}")
    if options.target not in TARGETS:
        raise ExportError(f"unknown --target {options.target!r}; choose cpu or gpu")
    with step(f"loading checkpoint {options.checkpoint}"):
        try:
            model, tokenizer, checkpoint = load_classifier(Path(options.checkpoint))
        except TrainingError as error:
            raise ExportError(str(error)) from None
    if not getattr(tokenizer, "is_fast", False) or not (checkpoint.path / "tokenizer.json").is_file():
        raise ExportError(
            f"{checkpoint.path}: a fast tokenizer (tokenizer.json) is needed to tokenize inside Triton")
    labels = checkpoint.labels
    model_type = str(getattr(model.config, "model_type", ""))
    if architecture(model_type) is None:
        raise ExportError(f"{checkpoint.path}: unsupported architecture {model_type!r}; the exporter supports "
                          f"{', '.join(sorted(ARCHITECTURES))} (add it to trainer/architectures.py after checking it)")
    if model.config.num_labels != len(labels):
        raise ExportError(
            f"{checkpoint.path}: the model has {model.config.num_labels} labels, the manifest {len(labels)}")
    check_label_change(options.repository, name, labels, options.allow_label_change)
    check_layout(options.repository, name, options.serving.layout)

    options.repository.mkdir(parents=True, exist_ok=True)
    # Not inside the repository: Triton takes every top-level folder there for a model, and a killed export's
    # leftover would stop the server starting.
    workdir = Path(tempfile.mkdtemp(prefix="tuneship-export-"))
    try:
        fp32_path = workdir / "model.onnx"
        from tuneship.exporter.prompt_folding import fold_prompt, is_prompt_learning

        graph_model = fold_prompt(model) if is_prompt_learning(model) else model
        with step(f"exporting the fp32 ONNX graph (opset {options.opset})"):
            input_names = export_onnx(graph_model, tokenizer, fp32_path, options.opset)
        eval_texts, eval_labels = read_jsonl(checkpoint.eval_data, max(options.gate_samples,
                                                                        options.validation_texts))
        validation_texts = eval_texts[:options.validation_texts] or list(FALLBACK_TEXTS)
        with step(f"validating the ONNX graph against PyTorch on {len(validation_texts)} held-out texts"):
            reference = torch_logits(model, tokenizer, validation_texts, checkpoint.max_length)
            result = validate(fp32_path, reference, tokenizer, input_names, validation_texts, checkpoint.max_length,
                              options.tolerance)
        print(result.describe())
        if not result.passed:
            raise ExportError(_validation_failure(result))

        variants = build_variants(options, fp32_path, workdir, graph_model, tokenizer, input_names, checkpoint)
        engine_note = ""
        if options.target == "gpu":
            engines, engine_note = tensorrt_variants(options, fp32_path, workdir, variants, tokenizer, input_names,
                                                      checkpoint)
            variants += engines
            print(f"note: {engine_note}")
        label_index = {label: i for i, label in enumerate(labels)}
        gate_texts = eval_texts[:options.gate_samples]
        gate_ids = [label_index[x] for x in eval_labels[:options.gate_samples]] if eval_labels else None
        reports: list[VariantReport] = []
        sessions: dict[str, Any] = {}
        gate_logits: dict[str, Any] = {}
        for variant in variants:
            with step(f"measuring {variant.name} on {len(validation_texts)} validation and {len(gate_texts)} "
                      "gate texts"):
                try:
                    report, session, logits = measure(variant, tokenizer, input_names, reference,
                                                      validation_texts, gate_texts, gate_ids, checkpoint.max_length)
                except Exception as error:  # e.g. fp16 kernels that exist only on GPUs
                    print(f"note: {variant.name} cannot run on this machine's CPU: "
                          f"{str(error).splitlines()[0][:200]}")
                    reports.append(unmeasured(variant, "cannot run on this machine's CPU; not evaluated"))
                    continue
            report.fused_operators = variant.fused_operators
            reports.append(report)
            sessions[variant.name] = session
            if logits is not None:
                gate_logits[variant.name] = logits
        with step(f"timing {len(sessions)} variants in turns at batch 1 and 32"):
            timings = time_interleaved(sessions, tokenizer, input_names, validation_texts, checkpoint.max_length)
            for report in reports:
                report.latency_ms.update(timings.get(report.name, {}))
        sessions.clear()
        chosen, reason = gate_and_choose(reports, options)
        if engine_note:
            reason += f"; {engine_note}"
        chosen_variant = next(v for v in variants if v.name == chosen.name)
        # One writer at a time: another export or publish into this repository finishes first.
        with repository_lock(options.repository, options.lock_timeout_s, f"tuneship export of {checkpoint.path}"):
            check_label_change(options.repository, name, labels, options.allow_label_change)
            check_layout(options.repository, name, options.serving.layout)
            with step(f"publishing {chosen.name} as the next version of {name} in {options.repository}"):
                behaviour = (reference_behaviour(gate_logits[chosen.name], labels, gate_ids)
                             if chosen.name in gate_logits else None)
                versions = publish_models(options, name, checkpoint, tokenizer, input_names, chosen_variant,
                                          labels, behaviour)
            if options.keep_variants:
                with step(f"keeping the variants that passed the gate beside {name} v{versions[name]}"):
                    keep_variants(options.repository, name, versions[name], variants, reports)
            export_report = ExportReport(
                name=name, repository=str(options.repository), versions=versions, target=options.target,
                chosen=chosen.name, reason=reason, variants=[asdict(r) for r in reports],
                validation=asdict(result), eval_accuracy=chosen.accuracy, onnx_size_bytes=chosen.size_bytes,
                latency_ms=chosen.latency_ms, input_names=input_names, reference=behaviour,
                checkpoint=str(Path(checkpoint.path).resolve()), layout=options.serving.layout,
            )
            report_path = options.repository / name / "export_report.json"
            write_text_atomic(report_path, json.dumps(asdict(export_report), indent=2) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(export_report.describe())
    print(f"report: {report_path}")
    return export_report


def gate_and_choose(reports: list[VariantReport], options: ExportOptions) -> tuple[VariantReport, str]:
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


def _validation_failure(result: ValidationResult) -> str:
    worst = "; ".join(f"{w['max_abs_diff']:.2e} on {w['text']!r}" for w in result.worst)
    return (f"not published: ONNX logits differ from PyTorch by up to {result.max_abs_diff:.2e}, over the "
            f"tolerance {result.tolerance:.0e} (label agreement {100 * result.label_agreement:.2f}%); "
            f"worst inputs: {worst}. Raise --tolerance only if the drift is understood.")


