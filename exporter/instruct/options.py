"""An instruct checkpoint's export options and how its generator serves. Light on purpose: the command's
dispatcher imports it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneship.arguments import non_negative_int, positive_int
from tuneship.exporter.options import THREADS, VERSIONS, ExportOptions

# The builder's int4 methods (its `algo_config`). Measured on SmolLM2-135M fine-tuned on the sentiment
# instructions (200 held-out prompts, fp32 0.865 exact match; benchmarks/int4_methods.py, BENCHMARKS.md):
# k_quant (every MatMul int4, scales chosen by k-quant) 0.855 at RTN's speed; k_quant_mixed (the lm_head and the
# most sensitive layers int8) 0.835 and about a third slower; default RTN 0.780.
INT4_METHODS = ("k_quant", "k_quant_mixed", "rtn", "default")


@dataclass
class GenerationServing:
    """How the generator serves: defaults and limits a caller cannot exceed."""

    default_max_tokens: int = field(default=256, metadata={
        "help": "instruct: tokens generated when a request does not say", "type": positive_int})
    max_tokens_limit: int = field(default=2048, metadata={
        "help": "instruct: the most tokens a request may ask for", "type": positive_int})
    max_prompt_tokens: int = field(default=4096, metadata={
        "help": "instruct: longest prompt accepted, in tokens", "type": positive_int})
    max_concurrency: int = field(default=8, metadata={
        "help": "instruct: streams generated at once, decoded together (more requests wait)", "type": positive_int})
    max_queue: int = field(default=16, metadata={
        "help": "instruct: requests that may wait for a slot, in arrival order; more are refused at once "
                "(RESOURCE_EXHAUSTED, naming the limit)", "type": non_negative_int})
    prefix_cache_mb: int = field(default=1024, metadata={
        "help": "instruct: memory for the automatic prefix cache, MiB: any prompt starting with tokens computed "
                "recently (a shared system prompt, a document asked again, a session's earlier turns) skips them; "
                "least recently used evicted first; 0 turns it off (sessions then start cold too)",
        "type": non_negative_int})
    stream_interval_ms: int = field(default=50, metadata={
        "help": "instruct: a stream's pieces leave at most this often, in ms (the first at once, the rest with the "
                "last piece); 0 sends every token. Each piece is a round trip to the server between decode steps: "
                "on 2 CPU cores per-token pieces cost about a fifth of the tokens", "type": non_negative_int})
    intra_op_threads: int = field(default=0, metadata=THREADS)
    versions_to_serve: int = field(default=1, metadata=VERSIONS)


@dataclass
class InstructExportOptions(ExportOptions):
    int4_method: str = field(default="k_quant", metadata={
        "help": "instruct int4: onnxruntime-genai's weight quantization (k_quant: every layer int4; k_quant_mixed "
                "keeps the output layer and the most sensitive layers in int8, slower)", "choices": INT4_METHODS})
    int4_calibrated: str = field(default="gptq", metadata={
        "help": "instruct auto on CPU: when int4 fails the gate, the calibrated 4-bit rung tried beside int8 (gptq: "
                "weights corrected for their inputs, calibrated on held-out prompts beyond the gate's; hqq: fitted "
                "per block, no data; none: straight to int8); the faster of those that pass is published",
        "choices": ("gptq", "hqq", "none")})
    adapter_of: str | None = field(default=None, metadata={
        "help": "instruct LoRA: publish the checkpoint's adapter (not a merged copy) as adapter --name of this "
                "published generator, served beside its other adapters without a restart"})
    base_model: bool = field(default=False, metadata={
        "help": "instruct LoRA: publish the base model the checkpoint was tuned from, the generator its adapters "
                "(--adapter-of) are served on"})
    generation: GenerationServing = field(default_factory=GenerationServing)
