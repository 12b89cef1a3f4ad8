"""Measure each ONNX variant next to fp32 and pick the one to publish (the accuracy gate)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuneship.exporter.variants import Variant


@dataclass
class VariantReport:
    name: str
    precision: str
    description: str
    size_bytes: int
    max_abs_diff: float
    label_agreement: float
    accuracy: float | None
    accuracy_drop_points: float | None
    latency_ms: dict[str, float]
    passed: bool = False
    note: str = ""
    fused_operators: dict[str, int] = field(default_factory=dict)
    # Worst change of a text's probabilities between answering it alone and in a batch with others
    # (NaN: not measured). Dynamic int8 scales activations per batch, so its answers move with batch-mates.
    batch_variation: float = float("nan")

    @property
    def batch_invariant(self) -> bool:
        return bool(self.batch_variation <= INVARIANCE_TOLERANCE)


INVARIANCE_TOLERANCE = 1e-5


def time_feeds(sessions: dict[str, Any], feeds: dict[int, dict[str, np.ndarray[Any, Any]]],
               rounds: int = 9) -> dict[str, dict[str, float]]:
    """Median wall time (ms) of one call per variant and batch size, the variants timed in turns (any task's
    inputs, one feed per batch size).

    Timing one variant after another lets a drift of the machine's speed (other work, frequency, a noisy
    neighbour) land on one variant only and flip the choice; round by round, every variant sees the same drift.
    """
    batches = list(feeds)
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in sessions}
    for session in sessions.values():  # warm-up: first calls allocate and pick kernels
        for batch in batches:
            session.run(None, feeds[batch])
    for _ in range(rounds):
        for name, session in sessions.items():
            for batch in batches:
                started = time.perf_counter()
                session.run(None, feeds[batch])
                samples[name][batch].append((time.perf_counter() - started) * 1000.0)
    return {name: {str(b): round(statistics.median(times), 2) for b, times in by_batch.items()}
            for name, by_batch in samples.items()}


def unmeasured(variant: Variant, note: str) -> VariantReport:
    return VariantReport(name=variant.name, precision=variant.precision, description=variant.description,
                         size_bytes=variant.path.stat().st_size, max_abs_diff=float("nan"), label_agreement=0.0,
                         accuracy=None, accuracy_drop_points=None, latency_ms={"1": float("nan"), "32": float("nan")},
                         passed=False, note=note)


def apply_gate(
    reports: list[VariantReport], baseline: VariantReport, threshold_points: float, tolerance: float
) -> None:
    """fp32 variants must match PyTorch within `tolerance`; the others may lose at most `threshold_points`."""
    for report in reports:
        if report.note:  # could not be measured: stays failed
            continue
        if report.precision == "fp32":
            report.passed = report.max_abs_diff <= tolerance
            report.note = (
                "matches PyTorch" if report.passed else f"logits drift {report.max_abs_diff:.2e} > {tolerance:.0e}"
            )
            if report.accuracy is not None and baseline.accuracy is not None:
                report.accuracy_drop_points = round(100 * (baseline.accuracy - report.accuracy), 2)
            continue
        if report.accuracy is not None and baseline.accuracy is not None:
            drop = 100 * (baseline.accuracy - report.accuracy)
            report.accuracy_drop_points = round(drop, 2)
            # Rounded: a drop of exactly the threshold passes ("more than" fails), floats notwithstanding.
            report.passed = round(drop, 6) <= threshold_points
            report.note = (
                f"eval accuracy {abs(drop):.2f} points {'below' if drop > 0 else 'above'} fp32 "
                f"({'within' if report.passed else 'over'} the {threshold_points:g}-point gate)"
            )
        else:
            # No labelled eval data: use agreement with fp32 labels as the gate instead.
            disagreement = 100 * (1 - report.label_agreement)
            report.passed = round(disagreement, 6) <= threshold_points
            report.note = (
                f"no labelled eval data: {disagreement:.2f}% of labels differ from fp32 "
                f"({'within' if report.passed else 'over'} the {threshold_points:g}-point gate)"
            )


def _closeness(report: VariantReport) -> tuple[float, float]:
    """Sort key among variants tied on speed: the smaller accuracy drop, then the smaller logit drift."""
    drop = report.accuracy_drop_points
    if drop is None:
        drop = 100 * (1 - report.label_agreement)
    return (drop, report.max_abs_diff)


def fastest_within_margin(candidates: list[VariantReport], margin: float) -> tuple[VariantReport, list[VariantReport]]:
    """The variant to take for speed, and the others that timed within `margin` (a share) of the fastest.

    Variants closer than the margin are a tie as far as timing can tell; the tie goes to the most accurate,
    which does not depend on noise, so the choice does not flip from one export to the next.
    """
    ordered = sorted(candidates, key=lambda r: r.latency_ms["32"])
    fastest = ordered[0].latency_ms["32"]
    tied = [r for r in ordered if r.latency_ms["32"] <= fastest * (1 + margin)]
    best = min(tied, key=_closeness)
    return best, [r for r in tied if r is not best]


def _tie_note(best: VariantReport, tied: list[VariantReport], margin: float) -> str:
    if not tied:
        return ""
    names = ", ".join(f"{r.name} ({r.latency_ms['32']:.1f} ms)" for r in tied)
    return (f"; within timing noise ({100 * margin:g}% margin) of {names}: the most accurate of them was taken")


def choose(reports: list[VariantReport], precision: str, target: str, force: bool,
           margin: float = 0.05, invariance_margin: float = 0.10) -> tuple[VariantReport, str]:
    """The variant to publish and why, or raise ValueError explaining why none may be published.

    Among the candidates, a batch-invariant one (a text's answer does not depend on its batch-mates) is taken
    over a faster variant that is not, unless the invariant one is slower by more than `invariance_margin`.
    """

    def fastest(candidates: list[VariantReport]) -> tuple[VariantReport, str]:
        best, tied = fastest_within_margin(candidates, margin)
        note = _tie_note(best, tied, margin)
        if best.batch_invariant or np.isnan(best.batch_variation):
            return best, note
        invariant = [r for r in candidates if r.batch_invariant]
        variation = f"{best.name}'s answers move by up to {best.batch_variation:.1e} with their batch-mates"
        if not invariant:
            return best, note + f"; {variation} and no candidate is batch-invariant"
        steady, steady_tied = fastest_within_margin(invariant, margin)
        slower = steady.latency_ms["32"] / best.latency_ms["32"] - 1
        if slower <= invariance_margin:
            return steady, (_tie_note(steady, steady_tied, margin) + f"; {variation}: the batch-invariant "
                            f"{steady.name} was taken, {100 * slower:.0f}% slower (within the "
                            f"{100 * invariance_margin:g}% --invariance-margin)")
        return best, note + (f"; {variation}: the fastest batch-invariant variant, {steady.name}, is "
                             f"{100 * slower:.0f}% slower, over the {100 * invariance_margin:g}% --invariance-margin")

    if precision == "auto":
        if target == "gpu":
            engines = [r for r in reports if r.name.startswith("tensorrt-") and r.passed]
            if engines:
                best, note = fastest(engines)
                return best, "GPU target: the TensorRT engine passes the accuracy gate" + note
            fp16 = [r for r in reports if r.precision == "fp16" and r.passed]
            if fp16:
                best, note = fastest(fp16)
                return best, "GPU target: fp16 passes the accuracy gate" + note
            fallback, _ = fastest([r for r in reports if r.precision == "fp32" and r.passed])
            fp16_note = next((r.note for r in reports if r.precision == "fp16"), "not built")
            return fallback, (f"GPU target: fp16 not published ({fp16_note}); fp32 ONNX with TensorRT's FP16 "
                              "precision mode, so the engine built at load time on the GPU still runs in fp16")
        passing = [r for r in reports if r.passed]
        if not passing:
            raise ValueError("no variant passed validation")
        best, note = fastest(passing)
        return best, (
            f"CPU target: fastest variant that passes the accuracy gate ({best.latency_ms['32']:.1f} ms at batch 32)"
            + note)
    of_precision = [r for r in reports if r.precision == precision]
    if not of_precision:
        raise ValueError(f"no {precision} variant was built")
    passing = [r for r in of_precision if r.passed]
    if passing:
        best, note = fastest(passing)
        return best, f"{precision} requested; passes the accuracy gate" + note
    if force:
        best, note = fastest(of_precision)
        return best, f"{precision} requested with --force despite failing the gate" + note
    details = "; ".join(f"{r.name}: {r.note}" for r in of_precision)
    raise ValueError(
        f"{precision} was requested but no {precision} variant passes the gate ({details}); "
        "pass --force to publish it anyway"
    )


def format_table(reports: list[VariantReport], chosen: str) -> str:
    lines = [
        f"{'variant':<18}{'size MB':>9}{'max|diff|':>11}{'agree':>8}{'accuracy':>10}{'drop':>7}"
        f"{'b1 ms':>8}{'b32 ms':>9}{'batch Δ':>10}  gate"
    ]
    for r in reports:
        accuracy = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
        drop = f"{r.accuracy_drop_points:+.2f}" if r.accuracy_drop_points is not None else "-"
        mark = "*" if r.name == chosen else " "
        lines.append(
            f"{mark}{r.name:<17}{r.size_bytes / 1e6:>9.1f}{r.max_abs_diff:>11.2e}{100 * r.label_agreement:>7.1f}%"
            f"{accuracy:>10}{drop:>7}{r.latency_ms['1']:>8.1f}{r.latency_ms['32']:>9.1f}"
            f"{r.batch_variation:>10.1e}  "
            f"{'pass' if r.passed else 'FAIL'}: {r.note}"
        )
    return "\n".join(lines)
