"""A text classifier's export: checkpoint -> fp32 ONNX validated against PyTorch -> fused, padding-free, int8 (and
on GPU fp16 / TensorRT) variants -> the four models of the ensemble layout or the one of the single-model layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneship.exporter.classifier import ClassifierExport
from tuneship.exporter.errors import ExportError
from tuneship.exporter.layout import check_layout
from tuneship.exporter.selection import VariantReport, unmeasured
from tuneship.exporter.text.build import build_variants, tensorrt_variants
from tuneship.exporter.text.measure import measure, time_interleaved
from tuneship.exporter.text.onnx_export import export_onnx
from tuneship.exporter.text.options import TextExportOptions
from tuneship.exporter.text.publishing import publish_models
from tuneship.exporter.text.texts import FALLBACK_TEXTS, read_jsonl
from tuneship.exporter.text.validation import torch_logits, validate
from tuneship.exporter.validation import ValidationResult
from tuneship.exporter.variants import Variant
from tuneship.progress import step


class TextClassifierExport(ClassifierExport[TextExportOptions]):
    options_class = TextExportOptions

    @property
    def task_name(self) -> str:
        return "text classifier"

    def check_options(self) -> None:
        if self.options.precision == "int4":
            raise ExportError("--precision int4 is for instruct checkpoints; a text classifier takes fp32, fp16 or "
                              "int8")
        if self.options.serving.layout == "single" and self.options.target != "cpu":
            raise ExportError("--layout single runs the graph in ONNX Runtime on the CPU inside a Python model; for "
                              f"--target {self.options.target} use the ensemble layout (leave --layout out)")
        super().check_options()

    def load(self) -> None:
        from tuneship.trainer import ARCHITECTURES, TrainingError, architecture, load_classifier

        with step(f"loading checkpoint {self.options.checkpoint}"):
            try:
                self.model, self.tokenizer, self.checkpoint = load_classifier(Path(self.options.checkpoint))
            except TrainingError as error:
                raise ExportError(str(error)) from None
        checkpoint, model = self.checkpoint, self.model
        if not getattr(self.tokenizer, "is_fast", False) or not (checkpoint.path / "tokenizer.json").is_file():
            raise ExportError(
                f"{checkpoint.path}: a fast tokenizer (tokenizer.json) is needed to tokenize inside Triton")
        self.labels = list(checkpoint.labels)
        model_type = str(getattr(model.config, "model_type", ""))
        if architecture(model_type) is None:
            raise ExportError(f"{checkpoint.path}: unsupported architecture {model_type!r}; the exporter supports "
                              f"{', '.join(sorted(ARCHITECTURES))} (add it to trainer/architectures.py after "
                              "checking it)")
        if model.config.num_labels != len(self.labels):
            raise ExportError(
                f"{checkpoint.path}: the model has {model.config.num_labels} labels, the manifest {len(self.labels)}")
        self.checkpoint_path = Path(checkpoint.path)

    @property
    def source(self) -> Path:
        return self.checkpoint_path

    def check_repository(self) -> None:
        super().check_repository()
        check_layout(self.options.repository, self.name, self.options.serving.layout)

    def build(self, workdir: Path) -> list[Variant]:
        from tuneship.exporter.text.prompt_folding import fold_prompt, is_prompt_learning

        options, checkpoint, tokenizer = self.options, self.checkpoint, self.tokenizer
        fp32_path = workdir / "model.onnx"
        graph_model = fold_prompt(self.model) if is_prompt_learning(self.model) else self.model
        with step(f"exporting the fp32 ONNX graph (opset {options.opset})"):
            self.input_names = export_onnx(graph_model, tokenizer, fp32_path, options.opset)
        eval_texts, eval_labels = read_jsonl(checkpoint.eval_data, max(options.gate_samples,
                                                                        options.validation_texts))
        self.validation_texts = eval_texts[:options.validation_texts] or list(FALLBACK_TEXTS)
        with step(f"validating the ONNX graph against PyTorch on {len(self.validation_texts)} held-out texts"):
            self.reference = torch_logits(self.model, tokenizer, self.validation_texts, checkpoint.max_length)
            self.validation = validate(fp32_path, self.reference, tokenizer, self.input_names, self.validation_texts,
                                       checkpoint.max_length, options.tolerance)
        print(self.validation.describe())
        if not self.validation.passed:
            raise ExportError(_validation_failure(self.validation))
        label_index = {label: i for i, label in enumerate(self.labels)}
        self.gate_texts = eval_texts[:options.gate_samples]
        self.gate_ids = [label_index[x] for x in eval_labels[:options.gate_samples]] if eval_labels else None
        variants = build_variants(options, fp32_path, workdir, graph_model, tokenizer, self.input_names, checkpoint)
        self.engine_note = ""
        if options.target == "gpu":
            engines, self.engine_note = tensorrt_variants(options, fp32_path, workdir, variants, tokenizer,
                                                          self.input_names, checkpoint)
            variants += engines
            print(f"note: {self.engine_note}")
        return variants

    def measure(self, variants: list[Variant]) -> list[VariantReport]:
        reports: list[VariantReport] = []
        sessions: dict[str, Any] = {}
        max_length = self.checkpoint.max_length
        for variant in variants:
            with step(f"measuring {variant.name} on {len(self.validation_texts)} validation and "
                      f"{len(self.gate_texts)} gate texts"):
                try:
                    report, session, logits = measure(variant, self.tokenizer, self.input_names, self.reference,
                                                      self.validation_texts, self.gate_texts, self.gate_ids,
                                                      max_length)
                except Exception as error:  # e.g. fp16 kernels that exist only on GPUs
                    print(f"note: {variant.name} cannot run on this machine's CPU: "
                          f"{str(error).splitlines()[0][:200]}")
                    reports.append(unmeasured(variant, "cannot run on this machine's CPU; not evaluated"))
                    continue
            report.fused_operators = variant.fused_operators
            reports.append(report)
            sessions[variant.name] = session
            if logits is not None:
                self.gate_logits[variant.name] = logits
        with step(f"timing {len(sessions)} variants in turns at batch 1 and 32"):
            timings = time_interleaved(sessions, self.tokenizer, self.input_names, self.validation_texts,
                                       max_length, self.timing.latencies)
            for report in reports:
                report.latency_ms.update(timings.get(report.name, {}))
        return reports

    def choose(self, reports: list[VariantReport]) -> tuple[VariantReport, str]:
        chosen, reason = super().choose(reports)
        return chosen, reason + (f"; {self.engine_note}" if self.engine_note else "")

    def publish(self, variant: Variant, chosen: VariantReport) -> dict[str, int]:
        return publish_models(self.options, self.name, self.checkpoint, self.tokenizer, self.input_names, variant,
                              self.labels, self.reference_of(chosen))


def _validation_failure(result: ValidationResult) -> str:
    worst = "; ".join(f"{w['max_abs_diff']:.2e} on {w['text']!r}" for w in result.worst)
    return (f"not published: ONNX logits differ from PyTorch by up to {result.max_abs_diff:.2e}, over the "
            f"tolerance {result.tolerance:.0e} (label agreement {100 * result.label_agreement:.2f}%); "
            f"worst inputs: {worst}. Raise --tolerance only if the drift is understood.")
