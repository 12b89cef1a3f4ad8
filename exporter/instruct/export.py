"""`tuneship export` of an instruct checkpoint: onnxruntime-genai variants, validated against PyTorch, gated on
exact-match accuracy, published as a decoupled Triton model that streams.

1. The checkpoint's model (LoRA already merged by the trainer) goes through onnxruntime-genai's builder: fp32 and
   int4 for a CPU target, fp16 and int4 (CUDA) for a GPU target. On a CPU, when auto's int4 fails the gate, int8
   (8-bit weights) is built and measured too: fine-tuned checkpoints whose int4 loses a few points keep fp32's
   answers in int8, at about twice fp32's speed.
2. Validation, always on: the fp32 (GPU: fp16) variant's greedy tokens must equal PyTorch's, token for token,
   on held-out prompts; otherwise nothing is published and the first prompt that differs is named.
3. Gate: every variant answers the held-out prompts greedily; where answers come from a closed set (sentiment
   words) exact-match accuracy is compared with fp32's, else agreement with fp32's answers; a variant that loses
   more than --accuracy-threshold points is not published unless --force.
4. Choice: auto takes the fastest decoder that passes (tokens per second), fp32/int4/int8/fp16 ask for one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneship.exporter.errors import ExportError
from tuneship.exporter.instruct.build import GenaiVariant, build_variant, check_builder
from tuneship.exporter.instruct.calibrated import build_calibrated
from tuneship.exporter.instruct.measure import (
    GenaiReport,
    GenaiRunner,
    first_difference,
    served_greedy,
    torch_greedy,
)
from tuneship.exporter.instruct.options import InstructExportOptions
from tuneship.exporter.instruct.publishing import publish_generator
from tuneship.exporter.run import ExportRunReport, TaskExport
from tuneship.exporter.timing import MEASURED, Timing
from tuneship.progress import step

VALIDATION_TOKENS = 16
GATE_TOKENS = 8
GATE_PROMPTS_MAX = 200


def _variants_to_build(options: InstructExportOptions) -> list[str]:
    if options.target == "gpu":
        wanted = {"auto": ["fp16", "int4"], "fp16": ["fp16"], "int4": ["fp16", "int4"], "fp32": ["fp16"]}
    else:
        wanted = {"auto": ["fp32", "int4"], "fp32": ["fp32"], "int4": ["fp32", "int4"], "int8": ["fp32", "int8"]}
    if options.precision not in wanted:
        raise ExportError(f"--precision {options.precision} is not available for an instruct checkpoint on a "
                          f"{options.target.upper()} target; choose {', '.join(wanted)}")
    return wanted[options.precision]


# Built only when auto's int4 fails the gate, on a CPU: a calibrated 4-bit build (--int4-calibrated) and 8-bit
# weights; the fastest of the variants that pass is published.
FALLBACKS = {"cpu": ["int4-calibrated", "int8"], "gpu": []}
CALIBRATION_PROMPTS = 32


@dataclass
class GeneratorExportReport(ExportRunReport):
    exported_at: str
    task: str = "instruct"
    checkpoint: str = ""  # where the published model came from (tuneship update continues from it)
    int4_method: str = ""  # how an int4 variant was quantized (an update exports its candidate the same way)

    def describe(self) -> str:
        return (f"published {self.chosen} for {self.target} as {self.name} v{self.versions[self.name]} in "
                f"{self.repository}\nwhy: {self.reason}")


class InstructExport(TaskExport[InstructExportOptions, GenaiVariant, GenaiReport]):
    options_class = InstructExportOptions

    @classmethod
    def create(cls, options: Any, timing: Timing = MEASURED) -> TaskExport[Any, Any, Any]:
        if getattr(options, "adapter_of", None):
            from tuneship.exporter.instruct.adapter_export import AdapterExport

            return AdapterExport(options, timing)
        return cls(options, timing)

    def check_options(self) -> None:
        if self.options.keep_variants:
            print("note: --keep-variants keeps ONNX classifier variants for tuneship tune; an instruct export keeps "
                  "only the published one")
        self.precisions = _variants_to_build(self.options)

    def load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tuneship.exporter.instruct.adapters import base_model_dir, read_instruct_checkpoint
        from tuneship.trainer import read_conversations

        options = self.options
        self.checkpoint = checkpoint = read_instruct_checkpoint(Path(options.checkpoint))
        self.model_dir = Path(checkpoint.path)
        if options.base_model:
            self.model_dir = base_model_dir(checkpoint, "so --base-model has no base to publish")
        elif checkpoint.method == "ptuning":
            raise ExportError(f"{checkpoint.path}: a P-tuning checkpoint's prompt encoder cannot be folded into the "
                              "weights, and onnxruntime-genai's builder takes plain weights only; train with "
                              "--method lora or full to serve it")
        check_builder()
        with step(f"loading {'the base model ' if options.base_model else 'checkpoint '}{self.model_dir}"):
            self.tokenizer = tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
            self.model = AutoModelForCausalLM.from_pretrained(str(self.model_dir)).eval()
        eos = set(tokenizer.all_special_ids) & {tokenizer.eos_token_id,
                                                tokenizer.convert_tokens_to_ids("<|im_end|>")}
        eos.discard(None)
        self.eos = eos
        held_out = read_conversations(checkpoint.eval_data) if checkpoint.eval_data else []
        if not held_out:
            raise ExportError(f"{checkpoint.path}: no held-out conversations (eval.jsonl) to validate the export "
                              "with")
        self.answers = {a.lower() for a in checkpoint.labels}
        self.gate = held_out[:min(options.gate_samples, GATE_PROMPTS_MAX)]
        # GPTQ's calibration prompts: held out, but never the gate's (its answers must not be fitted to).
        self.calibration = held_out[len(self.gate):len(self.gate) + CALIBRATION_PROMPTS]
        self.validation = held_out[:min(options.validation_texts, 8)]

    @property
    def source(self) -> Path:
        return self.model_dir

    def build(self, workdir: Path) -> list[GenaiVariant]:
        from tuneship.trainer import prompt_ids

        self.workdir = workdir
        variants: list[GenaiVariant] = []
        for precision in self.precisions:
            with step(f"building {precision} with onnxruntime-genai's model builder"):
                variants.append(build_variant(self.model_dir, workdir, self.options.target, precision,
                                              self.options.int4_method))
        reference = variants[0]
        with step(f"validating {reference.name}: greedy tokens against PyTorch's on {len(self.validation)} "
                  "prompts"):
            runner = GenaiRunner(reference.path)
            for conversation in self.validation:
                ids = prompt_ids(self.tokenizer, conversation)
                expected = torch_greedy(self.model, ids, VALIDATION_TOKENS, self.eos)
                try:
                    got, _ = runner.greedy(ids, VALIDATION_TOKENS)
                except RuntimeError as error:  # e.g. shapes onnxruntime-genai's kernels do not take
                    raise ExportError(f"not published: onnxruntime-genai cannot run the {reference.name} model: "
                                      f"{str(error).splitlines()[0][-300:]}") from None
                where = first_difference(expected, got)
                if where is not None:
                    raise ExportError(
                        f"not published: {reference.name} differs from PyTorch at generated token {where} for "
                        f"{conversation.source} (PyTorch {expected[:where + 1]}, ONNX {got[:where + 1]})")
            del runner
        print(f"validation ok: {reference.name} generates PyTorch's greedy tokens exactly on {len(self.validation)} "
              "prompts")
        return variants

    def measure(self, variants: list[GenaiVariant]) -> list[GenaiReport]:
        from tuneship.trainer import normalise, prompt_ids

        serving = self.options.generation
        slots = serving.max_concurrency
        reports = [_measure(v, self.tokenizer, self.gate, self.answers, normalise, prompt_ids, slots, self.timing)
                   for v in variants]
        # The fallback rungs join `variants` (the run picks the published files from that list by name).
        _gate(reports, self.options.accuracy_threshold, bool(self.answers))
        if self.options.precision != "auto" or any(r.passed for r in reports[1:]):
            return reports
        for rung in FALLBACKS[self.options.target]:
            built = self._fallback(rung, variants[0])
            if built is None:
                continue
            variants.append(built)
            reports.append(_measure(built, self.tokenizer, self.gate, self.answers, normalise, prompt_ids, slots,
                                    self.timing))
        return reports

    def _fallback(self, rung: str, fp32: GenaiVariant) -> GenaiVariant | None:
        """A rung of the ladder built (None: skipped by the options)."""
        from tuneship.trainer import prompt_ids

        if rung != "int4-calibrated":
            with step(f"int4 failed the gate: building {rung}"):
                return build_variant(self.model_dir, self.workdir, self.options.target, rung)
        method = self.options.int4_calibrated
        if method == "none":
            return None
        calibration = [prompt_ids(self.tokenizer, c) for c in self.calibration]
        if method == "gptq" and not calibration:
            print("note: no held-out prompts beyond the gate's to calibrate GPTQ with; HQQ (no data) instead")
            method = "hqq"
        how = f" on {len(calibration)} held-out prompts" if method == "gptq" else ""
        with step(f"int4 failed the gate: quantizing the fp32 build with {method.upper()}{how}"):
            return build_calibrated(fp32, self.workdir, method, calibration)

    def choose(self, reports: list[GenaiReport]) -> tuple[GenaiReport, str]:
        _gate(reports, self.options.accuracy_threshold, bool(self.answers))
        chosen, reason = _choose(reports, self.options.precision, self.options.force)
        print(format_reports(reports, chosen.name))
        return chosen, reason

    def publish(self, variant: GenaiVariant, chosen: GenaiReport) -> dict[str, int]:
        options = self.options
        from tuneship.exporter.instruct.adapters import weights_fingerprint

        # What adapters of this version must have been tuned on (tuneship export --adapter-of checks it).
        source = {"model": str(self.model_dir), "checkpoint": str(self.checkpoint.path),
                  "weights": weights_fingerprint(self.model_dir)}
        return {self.name: publish_generator(options.repository, self.name, variant, options.generation,
                                             options.keep, source, labels=sorted(self.answers),
                                             reference=self._reference(variant))}

    def _reference(self, variant: GenaiVariant) -> dict[str, Any]:
        """The published variant's behaviour on the gate prompts, as a caller who sets no max_tokens gets it."""
        from tuneship.exporter.instruct.reference import reference_behaviour
        from tuneship.trainer import normalise, prompt_ids

        serving = self.options.generation
        slots = serving.max_concurrency
        max_tokens = serving.default_max_tokens
        with step(f"recording {variant.name}'s reference behaviour: {len(self.gate)} held-out answers of up to "
                  f"{max_tokens} tokens"):
            generated = served_greedy(variant.path, [prompt_ids(self.tokenizer, c) for c in self.gate], max_tokens,
                                      slots)
            texts = [str(self.tokenizer.decode(tokens, skip_special_tokens=True)).strip() for tokens in generated]
            closed = sorted(self.answers)
            reference = reference_behaviour(generated, texts, max_tokens, closed,
                                            [c.answer for c in self.gate] if closed else None, normalise)
        share = reference["finish_share"]["length"]
        print(f"reference: {reference['mean_tokens']:.1f} tokens per answer, {share:.0%} end at max_tokens"
              + (f", exact match {reference['exact_match']:.3f}" if reference["exact_match"] is not None else ""))
        return reference

    def report(self, versions: dict[str, int], chosen: GenaiReport, reason: str,
               reports: list[GenaiReport]) -> GeneratorExportReport:
        options = self.options
        return GeneratorExportReport(
            name=self.name, repository=str(options.repository), versions=versions, target=options.target,
            chosen=chosen.name, reason=reason, variants=[_public(r) for r in reports],
            exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            checkpoint=str(Path(self.checkpoint.path).resolve()), int4_method=options.int4_method)


def _measure(variant: GenaiVariant, tokenizer: Any, gate: list[Any], answers: set[str], normalise: Any,
             prompt_ids: Any, slots: int, timing: Timing = MEASURED) -> GenaiReport:
    """The gate's answers as the variant will be served: through the serving engine, `slots` at a time (batched
    decoding may move a nearly tied greedy answer)."""
    report = GenaiReport(name=variant.name, precision=variant.precision, size_bytes=variant.size_bytes)
    how = f"batched {slots} at a time"
    with step(f"measuring {variant.name}: greedy answers to {len(gate)} held-out prompts ({how}), decode speed"):
        prompts = [prompt_ids(tokenizer, conversation) for conversation in gate]
        generated = served_greedy(variant.path, prompts, GATE_TOKENS, slots)
        report.answers = [tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens in generated]
        runner = GenaiRunner(variant.path)
        if answers:
            hits = sum(normalise(a) == normalise(c.answer) for a, c in zip(report.answers, gate, strict=True))
            report.exact_match = round(hits / len(gate), 4)
        report.ttft_ms, report.tokens_per_second = timing.decode(variant.name, runner, prompt_ids(tokenizer, gate[0]))
    return report


def _gate(reports: list[GenaiReport], threshold_points: float, closed: bool) -> None:
    base = reports[0]
    base.passed, base.note = True, "matches PyTorch"
    base.agreement = 1.0
    for report in reports[1:]:
        report.agreement = round(sum(a == b for a, b in zip(report.answers, base.answers, strict=True))
                                 / max(1, len(base.answers)), 4)
        if closed and report.exact_match is not None and base.exact_match is not None:
            drop = 100 * (base.exact_match - report.exact_match)
            what = "exact match"
        else:
            drop = 100 * (1 - report.agreement)
            what = f"answers differing from {base.name}"
        report.drop_points = round(drop, 2)
        report.passed = round(drop, 6) <= threshold_points
        report.note = (f"{what} {abs(drop):.2f} points {'below' if drop > 0 else 'above'} {base.name}"
                       if closed else f"{drop:.2f}% {what}") + (
            f" ({'within' if report.passed else 'over'} the {threshold_points:g}-point gate)")


def _choose(reports: list[GenaiReport], precision: str, force: bool) -> tuple[GenaiReport, str]:
    if precision == "auto":
        passing = [r for r in reports if r.passed]
        best = max(passing, key=lambda r: r.tokens_per_second)
        return best, f"fastest decoder that passes the accuracy gate ({best.tokens_per_second:.0f} tokens/s)"
    chosen = next(r for r in reports if r.precision == precision)
    if chosen.passed:
        return chosen, f"{precision} requested; passes the accuracy gate"
    if force:
        return chosen, f"{precision} requested with --force despite failing the gate"
    raise ExportError(f"not published: {precision} was requested but fails the gate ({chosen.note}); "
                      "pass --force to publish it anyway")


def _public(report: GenaiReport) -> dict[str, Any]:
    data = asdict(report)
    data.pop("answers")
    return data


def format_reports(reports: list[GenaiReport], chosen: str) -> str:
    lines = [f"{'variant':<12}{'size MB':>9}{'exact':>8}{'agree':>8}{'TTFT ms':>9}{'tokens/s':>10}  gate"]
    for r in reports:
        exact = f"{r.exact_match:.3f}" if r.exact_match is not None else "-"
        agree = f"{100 * r.agreement:.1f}%" if r.agreement is not None else "-"
        lines.append(f"{'*' if r.name == chosen else ' '}{r.name:<11}{r.size_bytes / 1e6:>9.1f}{exact:>8}{agree:>8}"
                     f"{r.ttft_ms:>9.1f}{r.tokens_per_second:>10.1f}  {'pass' if r.passed else 'FAIL'}: {r.note}")
    return "\n".join(lines)
