"""What every export run takes (ExportOptions), what both classifiers add (ClassifierExportOptions), and how Triton
runs a classifier's models (ServingOptions). Each task's own options extend these in its folder (text/options.py,
image/options.py, instruct/options.py); `tuneship export`'s flags are made from those classes (tuneship.options).

Light on purpose: the command's dispatcher imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuneship.arguments import non_negative_float, non_negative_int, positive_float, positive_int
from tuneship.repository import LAYOUT_ALIASES, LAYOUTS, LOCK_TIMEOUT_S

PRECISIONS = ("auto", "fp32", "fp16", "int8", "int4")
TARGETS = ("cpu", "gpu")
# One default for `export` and `deploy publish`: enough versions on disk to roll back twice.
DEFAULT_KEEP = 3
# LAYOUT_ALIASES: "fused" was the single-model layout's first name; it also named ONNX Runtime's operator fusion, so
# it was renamed. Repositories published under the old name keep working, and the old flag value is taken with a
# notice.


@dataclass
class ExportOptions:
    """The export run's options, whatever the task. Passed as is to `export_checkpoint`, they become the
    checkpoint's task's options with that task's defaults for the rest."""

    checkpoint: Path = field(metadata={"help": "checkpoint directory written by `tuneship train`",
                                       "positional": True})
    name: str = field(default="sentiment", metadata={"help": "model name in Triton (the name callers use)"})
    repository: Path = field(default=Path("model_repository"), metadata={
        "help": "Triton model repository to publish into"})
    target: str = field(default="cpu", metadata={"help": "where Triton will run the model", "choices": TARGETS})
    precision: str = field(default="auto", metadata={
        "help": "auto: on CPU the fastest variant that passes the accuracy gate, on GPU fp16 (int8 for text "
                "classifiers, int4 for instruct checkpoints)", "choices": PRECISIONS})
    opset: int = field(default=17, metadata={"help": "ONNX opset", "type": positive_int})
    tolerance: float = field(default=1e-3, metadata={
        "help": "largest allowed fp32 |logit difference| against PyTorch", "type": positive_float})
    validation_texts: int = field(default=256, metadata={
        "help": "held-out examples used for numerical validation", "flag": None})
    accuracy_threshold: float = field(default=1.0, metadata={
        "help": "largest eval-accuracy drop (points) a non-fp32 variant may have", "type": non_negative_float})
    gate_samples: int = field(default=1000, metadata={"help": "eval texts used by the accuracy gate",
                                                      "type": positive_int})
    force: bool = field(default=False, metadata={"help": "publish the requested precision even if it fails"})
    keep: int | None = field(default=DEFAULT_KEEP, metadata={
        "help": "versions of each model kept on disk (older ones are deleted)", "type": positive_int})
    keep_variants: bool = field(default=False, metadata={
        "help": "keep every ONNX variant that passed the gate beside the published version, so 'tuneship tune' "
                "sweeps precisions too (text and image classifiers)"})
    lock_timeout_s: float = field(default=LOCK_TIMEOUT_S, metadata={
        "help": "seconds to wait while another export or publish writes the same repository (0: fail at once)",
        "flag": "--lock-timeout", "type": non_negative_float})


# Options every task's serving has (ServingOptions, the generator's GenerationServing): one flag, one help.
THREADS = {"help": "ONNX Runtime threads (0: all cores; for an instruct checkpoint, per generation step)",
           "type": non_negative_int}
VERSIONS = {"help": "how many latest versions Triton serves", "flag": "--versions", "type": positive_int}


@dataclass
class ServingOptions:
    """What users tune most about how Triton runs a classifier's models."""

    max_batch_size: int = field(default=64, metadata={"help": "largest batch Triton builds",
                                                      "type": positive_int})
    # 0: the batcher still merges whatever queued while the model was busy, and a lone caller does not wait for
    # company that never comes (2000 us cost one caller 4.4 of its 10.2 ms p50 and lowered throughput at every
    # concurrency measured; BENCHMARKS.md, `tuneship tune`).
    queue_delay_us: int = field(default=0, metadata={
        "help": "dynamic batcher queue delay (0: batch what queued while the model was busy; `tuneship tune` "
                "measures others)", "type": non_negative_int})
    preferred_batch_sizes: tuple[int, ...] = field(default=(), metadata={
        "help": "dynamic batcher preferred size (repeatable; default: none)", "flag": "--preferred-batch-size",
        "action": "append", "type": positive_int})
    instance_count: int = field(default=1, metadata={"help": "instances of the ONNX model", "flag": "--instances",
                                                     "type": positive_int})
    instance_kind: str = field(default="KIND_CPU", metadata={
        "help": "KIND_CPU or KIND_GPU (a --target gpu export runs a KIND_CPU model on a GPU instance)",
        "choices": ("KIND_CPU", "KIND_GPU")})
    python_instance_count: int = field(default=1, metadata={"help": "instances of tokenizer / postprocess",
                                                            "flag": None})
    intra_op_threads: int = field(default=0, metadata=THREADS)
    versions_to_serve: int = field(default=1, metadata=VERSIONS)
    # Triton's batcher merges only requests of one shape; texts tokenized in different calls are padded to
    # different lengths, so without buckets they reach the model one by one (BENCHMARKS.md: concurrency 4, 222 ->
    # 339 texts/s with 16). Padding costs little: CPU graphs run token-wise operators on real tokens only.
    pad_to_multiple_of: int = field(default=16, metadata={
        "help": "the tokenizer pads a batch to a multiple of this many tokens, so requests tokenized apart share a "
                "shape the model's batcher can merge (1: to the longest text only)", "type": positive_int})
    max_text_bytes: int = field(default=0, metadata={
        "help": "longest text in UTF-8 bytes the served tokenizer accepts; longer ones are refused (0: 128 bytes "
                "per token of the checkpoint's max length)", "type": non_negative_int})
    quality_metrics: bool = field(default=True, metadata={
        "help": "export predictions by label, confidence and refused texts on Triton's metrics endpoint "
                "(model-quality monitoring; --no-quality-metrics leaves them out)"})
    layout: str = field(default="ensemble", metadata={
        "help": "text classifiers: ensemble (tokenizer, ONNX model, postprocess as three Triton models; the graph "
                "on Triton's ONNX Runtime backend, CPU or GPU) or single (one Python model doing all three: fastest "
                "on a CPU server; needs onnxruntime in the Python backend); fused is the old name of single",
        "choices": (*LAYOUTS, *LAYOUT_ALIASES)})

    def __post_init__(self) -> None:
        if self.layout in LAYOUT_ALIASES:
            self.layout = LAYOUT_ALIASES[self.layout]


@dataclass
class ClassifierExportOptions(ExportOptions):
    """What the text and image classifiers' exports share: int8 calibration, the choice among variants, labels,
    and how Triton serves the models."""

    calibration: str = field(default="percentile", metadata={
        "help": "static int8: how activation ranges are calibrated (percentile: the 99.99th, minmax or entropy)",
        "choices": ("percentile", "minmax", "entropy")})
    per_channel: bool = field(default=True, metadata={"help": "int8: per-channel weight scales"})
    speed_margin: float = field(default=0.05, metadata={
        "help": "auto: a variant must be this many percent faster than the next one to be preferred for speed; "
                "closer than that counts as a tie (timing noise), settled by accuracy", "cli_scale": 100,
        "type": non_negative_float})
    invariance_margin: float = field(default=0.10, metadata={
        "help": "a batch-invariant variant (a text's answer does not depend on its batch-mates) is taken over a "
                "faster one that is not, if it is at most this many percent slower", "cli_scale": 100,
        "type": non_negative_float})
    allow_label_change: bool = field(default=False, metadata={
        "help": "publish even if the model already in the repository has other labels"})
    serving: ServingOptions = field(default_factory=ServingOptions)
