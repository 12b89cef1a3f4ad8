"""`tuneship export`: checkpoint -> validated ONNX variants -> the four models of a Triton text classifier."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from exporter.errors import ExportError
from exporter.model_configs import (
    ServingOptions,
    ensemble_config,
    onnx_model_config,
    postprocess_config,
    tensorrt_model_config,
    tokenizer_config,
)
from exporter.onnx_export import export_onnx
from exporter.repository import check_model_name, publish_version
from exporter.selection import VariantReport, apply_gate, choose, format_table, measure, unmeasured
from exporter.token_packing import pack_tokens_file
from exporter.validation import ValidationResult, torch_logits, validate
from exporter.variants import (
    GRAPH_LEVEL_BASIC,
    Variant,
    convert_fp16,
    fused_operators,
    optimize_transformer,
    ort_offline_optimize,
    quantize_int8_dynamic,
    quantize_int8_static,
)

TRITON_MODELS = Path(__file__).parent / "triton_models"
FALLBACK_TEXTS = [
    "A gripping, beautifully acted film.",
    "Dull, overlong and badly written.",
    "It has its moments, but the ending falls flat.",
    "One of the best movies of the year.",
]
PRECISIONS = ("auto", "fp32", "fp16", "int8")
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
    int8_modes: tuple[str, ...] = field(default=("dynamic",), metadata={
        "help": "int8 flavours to try: dynamic (weights only) and static (QDQ, calibrated on training texts; on "
                "CPU slower and less accurate than dynamic for these encoders, so opt-in)"})
    per_channel: bool = field(default=True, metadata={"help": "int8: per-channel weight scales"})
    accuracy_threshold: float = field(default=1.0, metadata={
        "help": "largest allowed eval-accuracy drop (points) of a non-fp32 variant vs fp32"})
    gate_samples: int = field(default=1000, metadata={"help": "eval texts used by the accuracy gate"})
    calibration_samples: int = field(default=128, metadata={"help": "training texts used to calibrate static int8"})
    force: bool = field(default=False, metadata={"help": "publish the requested precision even if it fails the gate"})
    keep: int | None = field(default=None, metadata={"help": "keep only the newest N versions of each model"})
    engine_opt_batch: int | None = field(default=None, metadata={
        "help": "TensorRT profile: the batch size kernels are tuned for (default: half of max batch)"})
    engine_opt_sequence: int | None = field(default=None, metadata={
        "help": "TensorRT profile: the sequence length kernels are tuned for (default: half of max length)"})
    engine_workspace_bytes: int = field(default=1 << 30, metadata={"help": "TensorRT builder workspace"})
    serving: ServingOptions = field(default_factory=ServingOptions)


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

    def describe(self) -> str:
        return (f"published {self.chosen} for {self.target} as {self.name} in {self.repository}: "
                + ", ".join(f"{m} v{v}" for m, v in self.versions.items()) + f"\nwhy: {self.reason}")


def _read_jsonl(path: Path | None, limit: int) -> tuple[list[str], list[str]]:
    if path is None or not path.is_file():
        return [], []
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(texts) >= limit:
                break
            record = json.loads(line)
            texts.append(record["text"])
            labels.append(record["label"])
    return texts, labels


def _calibration_texts(checkpoint: Any, limit: int) -> list[str]:
    """Training texts for static int8 calibration (falls back to the held-out texts)."""
    from trainer.builtin_data import BUILTIN_DATASETS, load_builtin
    from trainer.data import load_file

    hyper = checkpoint.manifest.get("hyperparameters", {})
    source = str(hyper.get("data", ""))
    try:
        texts: list[str]
        if source in BUILTIN_DATASETS:
            texts = load_builtin(source).texts
        elif source and Path(source).is_file():
            texts = load_file(Path(source), hyper.get("text_column", "text"), hyper.get("label_column", "label"),
                              hyper.get("encoding", "utf-8")).texts
        else:
            texts = []
    except Exception:  # calibration data is best-effort: the eval texts are a fine stand-in
        texts = []
    texts = list(texts)
    if not texts:
        texts, _ = _read_jsonl(checkpoint.eval_data, limit)
    step = max(1, len(texts) // max(1, limit))
    return texts[::step][:limit] or list(FALLBACK_TEXTS)


def _encoder_shape(model: Any) -> tuple[str, int, int]:
    from trainer.architectures import architecture

    config = model.config
    known = architecture(str(getattr(config, "model_type", "")))
    return (known.fusion_model_type if known else "", int(getattr(config, "num_attention_heads", 0)),
            int(getattr(config, "hidden_size", 0)))


def build_variants(options: ExportOptions, fp32: Path, workdir: Path, model: Any, tokenizer: Any,
                    input_names: list[str], checkpoint: Any) -> list[Variant]:
    variants = [Variant("fp32", fp32, "fp32", "torch.onnx export, no fusions")]
    fusion_type, heads, hidden = _encoder_shape(model)
    on_cpu = options.target == "cpu"
    fused: Path | None = None
    if options.optimize and fusion_type:
        try:
            fused = optimize_transformer(fp32, workdir / "fused.onnx", fusion_type, heads, hidden, use_gpu=not on_cpu)
            counts = fused_operators(fused)
            description = "fused: " + (", ".join(f"{n} x{c}" for n, c in sorted(counts.items())) or "none")
            if on_cpu and options.remove_padding and pack_tokens_file(fused, workdir / "fused-packed.onnx"):
                fused = workdir / "fused-packed.onnx"
                description += ", padding removed"
            if on_cpu:
                optimized = ort_offline_optimize(fused, workdir / "optimized.onnx")
                variants.append(Variant("fp32-optimized", optimized, "fp32", description + ", ORT offline",
                                        counts, graph_level=GRAPH_LEVEL_BASIC))
            else:
                variants.append(Variant("fp32-optimized", fused, "fp32", description, counts))
        except Exception as error:  # report, don't fail: the plain graph is still publishable
            print(f"note: transformer optimizer failed ({error}); continuing without fusions")
            fused = None
    wants_int8 = options.precision == "int8" or (options.precision == "auto" and on_cpu)
    wants_fp16 = options.precision == "fp16" or (options.precision == "auto" and not on_cpu)
    # GPU int8 is static QDQ: the form TensorRT consumes (its scales), where dynamic int8's MatMulInteger
    # family has CPU kernels only.
    int8_modes = options.int8_modes if on_cpu else ("static",)
    if wants_int8:
        if "dynamic" in int8_modes:
            # The fused graph: its Attention becomes QAttention (int8 Q/K/V projection in one op).
            graph = ("fused graph, padding removed" if fused and fused.name == "fused-packed.onnx"
                     else "fused graph" if fused else "plain graph")
            try:
                quantized = quantize_int8_dynamic(fused or fp32, workdir / "int8-dynamic.q.onnx", options.per_channel)
                path = ort_offline_optimize(quantized, workdir / "int8-dynamic.onnx")
                variants.append(Variant(
                    "int8-dynamic", path, "int8",
                    f"dynamic int8 weights{' per channel' if options.per_channel else ''} on the {graph}, "
                    "ORT offline", graph_level=GRAPH_LEVEL_BASIC))
            except Exception as error:
                print(f"note: dynamic int8 quantization failed ({error}); continuing without it")
        if "static" in int8_modes:
            static = _static_int8(options, fp32, workdir, tokenizer, input_names, checkpoint)
            if static is not None:
                variants.append(static)
    if wants_fp16:
        path = convert_fp16(fused or fp32, workdir / "fp16.onnx", fused=fused is not None)
        variants.append(Variant("fp16", path, "fp16", "fp16 compute, fp32 inputs/outputs, norms/softmax in fp32"))
    return variants


def _static_int8(options: ExportOptions, fp32: Path, workdir: Path, tokenizer: Any, input_names: list[str],
                 checkpoint: Any) -> Variant | None:
    import numpy as np

    texts = _calibration_texts(checkpoint, options.calibration_samples)
    batches = []
    for start in range(0, len(texts), 16):
        encoded = tokenizer(texts[start:start + 16], truncation=True, max_length=checkpoint.max_length,
                            padding=True, return_tensors="np")
        batches.append({n: encoded[n].astype(np.int64) for n in input_names})
    try:
        path = quantize_int8_static(fp32, workdir / "int8-static.onnx", batches, options.per_channel)
    except Exception as error:
        print(f"note: static int8 quantization failed ({error}); continuing without it")
        return None
    return Variant("int8-static", path, "int8", f"static QDQ int8, calibrated on {len(texts)} training texts")


ENGINE_PRECISION = {"auto": "FP16", "fp16": "FP16", "int8": "INT8", "fp32": "FP32"}


def _tensorrt_variants(options: ExportOptions, fp32: Path, workdir: Path, variants: list[Variant], tokenizer: Any,
                       input_names: list[str], checkpoint: Any) -> tuple[list[Variant], str]:
    """A `tensorrt_plan` engine where TensorRT and a GPU exist; otherwise nothing, and the reason."""
    from exporter.tensorrt_engine import build_engine, default_profile, tensorrt_unavailable

    missing = tensorrt_unavailable()
    if missing is not None:
        return [], (f"no standalone TensorRT engine: {missing}; the ONNX model is published with ONNX Runtime's "
                    "TensorRT accelerator, which builds (and caches) the engine on the GPU at load time")
    precision = ENGINE_PRECISION[options.precision]
    source = fp32
    if precision == "INT8":  # explicit quantization: TensorRT reads the scales from a QDQ graph
        static = next((v for v in variants if v.name == "int8-static"), None) or _static_int8(
            options, fp32, workdir, tokenizer, input_names, checkpoint)
        if static is None:
            return [], "no TensorRT INT8 engine: static QDQ quantization failed"
        source = static.path
    # At least 64: the gate runs batches of 64 through the engine; Triton may still cap batches lower.
    profile = default_profile(max(options.serving.max_batch_size, 64), checkpoint.max_length,
                              options.engine_opt_batch, options.engine_opt_sequence)  # bad values: an error
    try:
        built = build_engine(source, workdir / "model.plan", input_names, profile, precision,
                             options.engine_workspace_bytes)
    except ExportError as error:
        return [], f"TensorRT engine not built: {error}"
    variant = Variant(f"tensorrt-{precision.lower()}", workdir / "model.plan", precision.lower(),
                      f"TensorRT {built['tensorrt']} {precision} engine for {built['gpu']}, profile batch "
                      f"1/{profile.opt_batch}/{profile.max_batch}, sequence 1/{profile.opt_sequence}/"
                      f"{profile.max_sequence}", format="tensorrt_plan", profile=profile)
    return [variant], f"TensorRT {precision} engine built ({built['gpu']})"


def export_checkpoint(options: ExportOptions) -> ExportReport:
    from trainer import TrainingError, load_classifier
    from trainer.architectures import ARCHITECTURES, architecture

    name = check_model_name(options.name)
    if options.precision not in PRECISIONS:
        raise ExportError(f"unknown --precision {options.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if options.target not in TARGETS:
        raise ExportError(f"unknown --target {options.target!r}; choose cpu or gpu")
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

    options.repository.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".export-", dir=options.repository))
    try:
        fp32_path = workdir / "model.onnx"
        from exporter.prompt_folding import fold_prompt, is_prompt_learning

        graph_model = fold_prompt(model) if is_prompt_learning(model) else model
        input_names = export_onnx(graph_model, tokenizer, fp32_path, options.opset)
        eval_texts, eval_labels = _read_jsonl(checkpoint.eval_data, max(options.gate_samples,
                                                                        options.validation_texts))
        validation_texts = eval_texts[:options.validation_texts] or list(FALLBACK_TEXTS)
        reference = torch_logits(model, tokenizer, validation_texts, checkpoint.max_length)
        result = validate(fp32_path, reference, tokenizer, input_names, validation_texts, checkpoint.max_length,
                          options.tolerance)
        print(result.describe())
        if not result.passed:
            raise ExportError(_validation_failure(result))

        variants = build_variants(options, fp32_path, workdir, graph_model, tokenizer, input_names, checkpoint)
        engine_note = ""
        if options.target == "gpu":
            engines, engine_note = _tensorrt_variants(options, fp32_path, workdir, variants, tokenizer, input_names,
                                                      checkpoint)
            variants += engines
            print(f"note: {engine_note}")
        label_index = {label: i for i, label in enumerate(labels)}
        gate_texts = eval_texts[:options.gate_samples]
        gate_ids = [label_index[x] for x in eval_labels[:options.gate_samples]] if eval_labels else None
        reports: list[VariantReport] = []
        for variant in variants:
            try:
                report, _ = measure(variant, tokenizer, input_names, reference, validation_texts, gate_texts,
                                    gate_ids, checkpoint.max_length)
            except Exception as error:  # e.g. fp16 kernels that exist only on GPUs
                print(f"note: {variant.name} cannot run on this machine's CPU: {str(error).splitlines()[0][:200]}")
                reports.append(unmeasured(variant, "cannot run on this machine's CPU; not evaluated"))
                continue
            report.fused_operators = variant.fused_operators
            reports.append(report)
        apply_gate(reports, reports[0], options.accuracy_threshold, options.tolerance)
        try:
            chosen, reason = choose(reports, options.precision, options.target, options.force)
            if engine_note:
                reason += f"; {engine_note}"
        except ValueError as error:
            print(format_table(reports, chosen=""))
            raise ExportError(f"not published: {error}") from None
        print(format_table(reports, chosen.name))
        chosen_variant = next(v for v in variants if v.name == chosen.name)
        versions = _publish(options, name, checkpoint, tokenizer, input_names, chosen_variant, labels)
        export_report = ExportReport(
            name=name, repository=str(options.repository), versions=versions, target=options.target,
            chosen=chosen.name, reason=reason, variants=[asdict(r) for r in reports], validation=asdict(result),
            eval_accuracy=chosen.accuracy, onnx_size_bytes=chosen.size_bytes, latency_ms=chosen.latency_ms,
            input_names=input_names,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report_path = options.repository / name / "export_report.json"
    report_path.write_text(json.dumps(asdict(export_report), indent=2) + "\n", encoding="utf-8")
    print(export_report.describe())
    print(f"report: {report_path}")
    return export_report


def _validation_failure(result: ValidationResult) -> str:
    worst = "; ".join(f"{w['max_abs_diff']:.2e} on {w['text']!r}" for w in result.worst)
    return (f"not published: ONNX logits differ from PyTorch by up to {result.max_abs_diff:.2e}, over the "
            f"tolerance {result.tolerance:.0e} (label agreement {100 * result.label_agreement:.2f}%); "
            f"worst inputs: {worst}. Raise --tolerance only if the drift is understood.")


PYTHON_MODEL_REQUIREMENTS = {
    "tokenizer": "# Needed by this Python model in the Triton image: pip install -r requirements.txt\n"
                 "numpy<2\ntokenizers>=0.15\n",
    "postprocess": "# Needed by this Python model in the Triton image: pip install -r requirements.txt\nnumpy<2\n",
}


def _publish(options: ExportOptions, name: str, checkpoint: Any, tokenizer: Any, input_names: list[str],
             variant: Variant, labels: list[str]) -> dict[str, int]:
    repo, serving = options.repository, options.serving
    if options.target == "gpu" and serving.instance_kind == "KIND_CPU":
        serving = ServingOptions(**{**asdict(serving), "instance_kind": "KIND_GPU"})
    pad_token = tokenizer.pad_token or "[PAD]"
    pad_id = int(tokenizer.pad_token_id or 0)

    engine = variant.format == "tensorrt_plan"

    def fill_model(target: Path) -> None:
        shutil.copy2(variant.path, target / ("model.plan" if engine else "model.onnx"))

    def fill_tokenizer(target: Path) -> None:
        shutil.copy2(TRITON_MODELS / "tokenizer.py", target / "model.py")
        shutil.copy2(checkpoint.path / "tokenizer.json", target / "tokenizer.json")

    def fill_postprocess(target: Path) -> None:
        shutil.copy2(TRITON_MODELS / "postprocess.py", target / "model.py")
        (target / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")

    def fill_ensemble(target: Path) -> None:
        (target / "README").write_text(f"ensemble of {name}_tokenizer, {name}_model, {name}_postprocess\n")

    num_labels = len(labels)
    if engine:
        model_config = tensorrt_model_config(f"{name}_model", input_names, num_labels, serving,
                                             profile_max_batch=variant.profile.max_batch,
                                             warmup_length=min(16, variant.profile.max_sequence))
    else:
        model_config = onnx_model_config(f"{name}_model", input_names, num_labels, serving,
                                         graph_level=variant.graph_level)
    if options.target == "gpu" and not engine:
        from exporter.model_configs import add_tensorrt_accelerator

        mode = {"int8": "INT8", "fp16": "FP16"}.get(variant.precision,
                                                    "FP16" if options.precision == "auto" else "FP32")
        add_tensorrt_accelerator(model_config, mode)
    post_config = postprocess_config(f"{name}_postprocess", num_labels, serving)
    versions = {
        f"{name}_model": publish_version(repo, model_config, fill_model, options.keep),
        f"{name}_tokenizer": publish_version(
            repo, tokenizer_config(f"{name}_tokenizer", input_names, checkpoint.max_length, pad_token, pad_id,
                                   serving), fill_tokenizer, options.keep),
        f"{name}_postprocess": publish_version(repo, post_config, fill_postprocess, options.keep),
    }
    # Beside config.pbtxt: the labels file the config names, and what the Python models need installed.
    (repo / post_config.name / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (repo / f"{name}_tokenizer" / "requirements.txt").write_text(PYTHON_MODEL_REQUIREMENTS["tokenizer"])
    (repo / post_config.name / "requirements.txt").write_text(PYTHON_MODEL_REQUIREMENTS["postprocess"])
    versions[name] = publish_version(repo, ensemble_config(name, input_names, labels, serving), fill_ensemble,
                                     options.keep)
    return versions
