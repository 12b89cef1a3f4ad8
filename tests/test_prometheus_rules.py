"""Prometheus config and rules checked by promtool; every alert is made to fire and not to fire."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import require_tool

PROMETHEUS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_config_and_rules_are_valid() -> None:
    checked = _run("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = _run("check", "rules", str(PROMETHEUS / "recording_rules.yml"), str(PROMETHEUS / "alert_rules.yml"))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def _runbooks() -> dict[str, str]:
    groups = yaml.safe_load((PROMETHEUS / "alert_rules.yml").read_text())["groups"]
    return {rule["alert"]: rule["annotations"]["runbook"] for group in groups for rule in group["rules"]}


def _series(name: str, values: str | list[float]) -> dict[str, str]:
    text = values if isinstance(values, str) else " ".join(f"{v:g}" for v in values)
    return {"series": name, "values": text}


def _rising_queue() -> list[float]:
    """Cumulative queue microseconds whose per-request average climbs from 25 ms by 5 ms every 2 minutes."""
    total, values = 0.0, []
    for step in range(120):
        values.append(total)
        total += 100 * (25_000 + 5_000 * (step // 8))
    return values


def _flat_queue() -> list[float]:
    return [step * 100 * 30_000.0 for step in range(120)]


def _labels(model: str, per_step: dict[str, float], reference: dict[str, float]) -> list[dict[str, str]]:
    """Predictions by label (counts per 15 s step, for an hour) and the reference's label shares."""
    return [*(_series(f'tuneship_predictions_total{{model="{model}",version="1",label="{label}"}}', f"0+{n:g}x240")
              for label, n in per_step.items()),
            *(_series(f'tuneship_reference_label_share{{model="{model}",version="1",label="{label}"}}',
                      f"{share:g}x240") for label, share in reference.items())]


def _answers(model: str, per_step: dict[str, float], reference: dict[str, float],
             labels: dict[str, float] | None = None,
             reference_labels: dict[str, float] | None = None) -> list[dict[str, str]]:
    """A generator's finished answers by length bin (counts per 15 s step, for an hour), its answers by label, and
    the reference's shares of both."""
    base = f'model="{model}",version="1"'
    return [*(_series(f'tuneship_generation_answer_length_total{{{base},bin="{name}"}}', f"0+{n:g}x240")
              for name, n in per_step.items()),
            *(_series(f'tuneship_generation_reference_length_share{{{base},bin="{name}"}}', f"{share:g}x240")
              for name, share in reference.items()),
            *(_series(f'tuneship_generation_answers_total{{{base},label="{name}"}}', f"0+{n:g}x240")
              for name, n in (labels or {}).items()),
            *(_series(f'tuneship_generation_reference_label_share{{{base},label="{name}"}}', f"{share:g}x240")
              for name, share in (reference_labels or {}).items())]


def _finishes(model: str, answers: float, reason: str, per_step: float, reference: float) -> list[dict[str, str]]:
    """`answers` finished answers per step, `per_step` of them with `reason` (length finishes or empty answers),
    and the reference's share of that reason."""
    base = f'model="{model}",version="1"'
    live, gauge = {"length": (f'tuneship_generation_requests_total{{{base},finish_reason="length"}}',
                              f'tuneship_generation_reference_finish_share{{{base},finish_reason="length"}}'),
                   "empty": (f"tuneship_generation_empty_answers_total{{{base}}}",
                             f"tuneship_generation_reference_empty_share{{{base}}}")}[reason]
    return [_series(f'tuneship_generation_answer_length_total{{{base},bin="8"}}', f"0+{answers:g}x240"),
            _series(live, f"0+{per_step:g}x240"), _series(gauge, f"{reference:g}x240")]


def _constrained(model: str, per_step: float, failed: float) -> list[dict[str, str]]:
    base = f'model="{model}",version="1",constraint="guided_regex"'
    return [_series(f"tuneship_generation_constrained_requests_total{{{base}}}", f"0+{per_step:g}x240"),
            _series(f"tuneship_generation_constraint_failures_total{{{base}}}", f"0+{failed:g}x240")]


def _bins(model: str, per_step: dict[str, float], reference: dict[str, float]) -> list[dict[str, str]]:
    total = sum(per_step.values())
    return [_series(f'tuneship_predictions_total{{model="{model}",version="1",label="a"}}', f"0+{total:g}x240"),
            *(_series(f'tuneship_prediction_confidence_total{{model="{model}",version="1",bin="{name}"}}',
                      f"0+{n:g}x240") for name, n in per_step.items()),
            *(_series(f'tuneship_reference_confidence_share{{model="{model}",version="1",bin="{name}"}}',
                      f"{share:g}x240") for name, share in reference.items())]


def _confidence(model: str, per_step: float, confidence_per_step: float, reference: float) -> list[dict[str, str]]:
    return [_series(f'tuneship_predictions_total{{model="{model}",version="1",label="a"}}', f"0+{per_step:g}x240"),
            _series(f'tuneship_prediction_confidence_sum{{model="{model}",version="1"}}',
                    f"0+{confidence_per_step:g}x240"),
            _series(f'tuneship_reference_mean_confidence{{model="{model}",version="1"}}', f"{reference:g}x240")]


def _estimated(model: str, per_step: dict[str, float], reference: float) -> list[dict[str, str]]:
    """Answers by confidence bin, and the calibration: answers in bin 0.50 right 60% of the time, in 0.99 99%."""
    calibration = {"0.50": 0.6, "0.99": 0.99}
    return [*_bins(model, per_step, {name: 0.5 for name in per_step}),
            *(_series(f'tuneship_reference_bin_accuracy{{model="{model}",version="1",bin="{name}"}}', f"{value:g}x240")
              for name, value in calibration.items()),
            _series(f'tuneship_reference_accuracy{{model="{model}",version="1"}}', f"{reference:g}x240")]


CASES: list[dict[str, Any]] = [
    {"alert": "TritonP99LatencyOverSLO", "eval_time": "10m",
     "series": [_series('nv_inference_request_summary_us{model="slow",version="1",quantile="0.99"}', "600000x60"),
                _series('nv_inference_request_summary_us{model="fast",version="1",quantile="0.99"}', "100000x60")],
     "expect": [({"model": "slow", "version": "1", "quantile": "0.99", "severity": "page"},
                 "slow v1: server p99 latency 600 ms > 500 ms")]},
    {"alert": "TritonP99LatencyOverSLO", "eval_time": "3m",  # over the SLO, but not for 5 minutes yet
     "series": [_series('nv_inference_request_summary_us{model="slow",version="1",quantile="0.99"}', "600000x60")],
     "expect": []},
    {"alert": "ClientP99LatencyOverSLO", "eval_time": "10m",
     "series": [_series('tuneship_client_request_duration_seconds_bucket{model="slow",outcome="ok",le="0.5"}', "0x60"),
                _series('tuneship_client_request_duration_seconds_bucket{model="slow",outcome="ok",le="1.0"}',
                        "0+10x60"),
                _series('tuneship_client_request_duration_seconds_bucket{model="slow",outcome="ok",le="+Inf"}',
                        "0+10x60"),
                _series('tuneship_client_request_duration_seconds_bucket{model="fast",outcome="ok",le="0.05"}',
                        "0+10x60"),
                _series('tuneship_client_request_duration_seconds_bucket{model="fast",outcome="ok",le="+Inf"}',
                        "0+10x60")],
     "expect": [({"model": "slow", "severity": "page"}, "slow: p99 latency seen by clients 995 ms > 500 ms")]},
    {"alert": "TritonErrorRatioHigh", "eval_time": "10m",
     "series": [_series('nv_inference_request_success{model="flaky",version="2"}', "0+100x60"),
                _series('nv_inference_request_failure{model="flaky",version="2",reason="BACKEND"}', "0+10x60"),
                _series('nv_inference_request_success{model="healthy",version="1"}', "0+100x60")],
     "expect": [({"model": "flaky", "version": "2", "severity": "page"}, "flaky v2: 9.091% of requests fail")]},
    {"alert": "TritonQueueTimeGrowing", "eval_time": "29m30s",
     "series": [_series('nv_inference_request_success{model="busy",version="1"}', "0+100x120"),
                _series('nv_inference_queue_duration_us{model="busy",version="1"}', _rising_queue()),
                _series('nv_inference_request_success{model="steady",version="1"}', "0+100x120"),
                _series('nv_inference_queue_duration_us{model="steady",version="1"}', _flat_queue())],
     "expect": [({"model": "busy", "version": "1", "severity": "ticket"},
                 "busy v1: queue time 95 ms and rising")]},
    {"alert": "TritonTargetDown", "eval_time": "3m",
     "series": [_series('up{job="triton",instance="a:8002"}', "0x20"),
                _series('up{job="triton",instance="b:8002"}', "1x20")],
     "expect": [({"job": "triton", "instance": "a:8002", "severity": "page"},
                 "Triton metrics endpoint a:8002 is down")]},
    {"alert": "TritonModelNotReady", "eval_time": "18m",
     "series": [_series('nv_inference_request_success{model="gone",version="1"}', "0+1x40"),
                _series('nv_inference_request_success{model="stays",version="1"}', "0+1x80")],
     "expect": [({"model": "gone", "severity": "page"},
                 "gone disappeared from Triton's metrics (unloaded or failed to load)")]},
    {"alert": "TritonNoTraffic", "eval_time": "20m",
     "series": [_series('nv_inference_request_success{model="idle",version="1"}', "5x100"),
                _series('nv_inference_request_success{model="idle_tokenizer",version="1"}', "5x100"),
                _series('nv_inference_request_success{model="busy",version="1"}', "0+10x100")],
     "expect": [({"model": "idle", "severity": "ticket"}, "idle has had no requests for 15 minutes")]},
    {"alert": "GenerationTimeToFirstTokenHigh", "eval_time": "20m",
     "series": [_series('tuneship_generation_time_to_first_token_seconds_bucket{model="slow",version="1",le="0.5"}',
                        "0x100"),
                _series('tuneship_generation_time_to_first_token_seconds_bucket{model="slow",version="1",le="1"}',
                        "0+10x100"),
                _series('tuneship_generation_time_to_first_token_seconds_bucket{model="slow",version="1",le="+Inf"}',
                        "0+10x100"),
                _series('tuneship_generation_time_to_first_token_seconds_bucket{model="fast",version="1",le="0.1"}',
                        "0+10x100"),
                _series('tuneship_generation_time_to_first_token_seconds_bucket{model="fast",version="1",le="+Inf"}',
                        "0+10x100")],
     "expect": [({"model": "slow", "version": "1", "severity": "page"},
                 "slow v1: p95 time to first token 975 ms > 500 ms")]},
    {"alert": "GenerationQueueFull", "eval_time": "20m",
     "series": [_series('tuneship_generation_refused_total{model="full",version="1",reason="queue_full"}', "0+30x100"),
                _series('tuneship_generation_refused_total{model="full",version="1",reason="expired"}', "0+30x100"),
                _series('tuneship_generation_refused_total{model="calm",version="1",reason="queue_full"}', "7x100")],
     "expect": [({"model": "full", "version": "1", "reason": "queue_full", "severity": "page"},
                 "full v1: the generation queue is full, 2.00 requests/s refused")]},
    {"alert": "OpenAIApiServerErrors", "eval_time": "15m",
     "series": [_series('tuneship_api_requests_total{endpoint="chat.completions",model="chat",status="200"}',
                        "0+60x100"),
                _series('tuneship_api_requests_total{endpoint="chat.completions",model="chat",status="503"}',
                        "0+15x100"),
                # Callers' mistakes and a full queue are not the server's errors.
                _series('tuneship_api_requests_total{endpoint="completions",model="chat",status="200"}', "0+60x100"),
                _series('tuneship_api_requests_total{endpoint="completions",model="chat",status="400"}', "0+60x100"),
                _series('tuneship_api_requests_total{endpoint="completions",model="chat",status="429"}', "0+60x100")],
     "expect": [({"endpoint": "chat.completions", "model": "chat", "severity": "page"},
                 "chat through the OpenAI-compatible API: 20% of chat.completions requests answered 5xx")]},
    {"alert": "GenerationLengthDrift", "eval_time": "50m",
     "series": [*_answers("rambling", {"0": 0, "8": 2, "256": 8}, {"0": 0.0, "8": 0.9, "256": 0.1}),
                *_answers("steady", {"0": 0, "8": 9, "256": 1}, {"0": 0.0, "8": 0.9, "256": 0.1}),
                *_answers("quiet", {"0": 0, "8": 0, "256": 0.1}, {"0": 0.0, "8": 0.9, "256": 0.1})],  # 24 answers
     "expect": [({"model": "rambling", "version": "1", "severity": "ticket"},
                 "rambling v1: answer lengths drifted from the reference (PSI 2.51 > 0.25)")]},
    {"alert": "GenerationLabelDrift", "eval_time": "50m",
     "series": [*_answers("shifted", {"1": 10}, {"1": 1.0}, {"positive": 2, "negative": 6, "other": 2},
                          {"positive": 0.5, "negative": 0.5, "other": 0.0}),
                *_answers("same", {"1": 10}, {"1": 1.0}, {"positive": 5, "negative": 5, "other": 0},
                          {"positive": 0.5, "negative": 0.5, "other": 0.0})],
     "expect": [({"model": "shifted", "version": "1", "severity": "ticket"},
                 "shifted v1: answer label shares drifted from the reference (PSI 1.35 > 0.25)")]},
    {"alert": "GenerationCutOffAnswersRising", "eval_time": "50m",
     "series": [*_finishes("cut", 10, "length", 4, 0.1), *_finishes("whole", 10, "length", 1.5, 0.1)],
     "expect": [({"model": "cut", "version": "1", "severity": "ticket"},
                 "cut v1: 40% of answers end at max_tokens, over 10 points above the reference")]},
    {"alert": "GenerationEmptyAnswersRising", "eval_time": "50m",
     "series": [*_finishes("mute", 10, "empty", 5, 0.0), *_finishes("talks", 10, "empty", 0.5, 0.0)],
     "expect": [({"model": "mute", "version": "1", "severity": "ticket"},
                 "mute v1: 50% of answers are empty, over 10 points above the reference")]},
    {"alert": "GenerationConstraintFailures", "eval_time": "50m",
     "series": [*_constrained("strict", 1, 0.25), *_constrained("fine", 1, 0.01),
                *_constrained("rare", 0.005, 0.005)],  # every one failed, but only 1 in 30 minutes
     "expect": [({"model": "strict", "version": "1", "severity": "ticket"},
                 "strict v1: 25% of constrained requests could not follow their constraint")]},
    {"alert": "LiveAnswersBelowReference", "eval_time": "40m",
     "series": [_series('tuneship_live_answer_exact_match{model="chat",version="2",adapter="",job="monitor"}',
                        "0.7x200"),
                _series('tuneship_live_answers_reviewed{model="chat",version="2",adapter="",job="monitor"}', "80x200"),
                _series('tuneship_generation_reference_exact_match{model="chat",version="2",job="triton"}', "0.85x200"),
                # An adapter has no reference to fall under; a version within 5 points; one with 10 reviews.
                _series('tuneship_live_answer_exact_match{model="chat",version="2",adapter="support",job="monitor"}',
                        "0.1x200"),
                _series('tuneship_live_answers_reviewed{model="chat",version="2",adapter="support",job="monitor"}',
                        "80x200"),
                _series('tuneship_live_answer_exact_match{model="chat",version="1",adapter="",job="monitor"}',
                        "0.82x200"),
                _series('tuneship_live_answers_reviewed{model="chat",version="1",adapter="",job="monitor"}', "80x200"),
                _series('tuneship_generation_reference_exact_match{model="chat",version="1",job="triton"}', "0.85x200"),
                _series('tuneship_live_answer_exact_match{model="few",version="1",adapter="",job="monitor"}',
                        "0.1x200"),
                _series('tuneship_live_answers_reviewed{model="few",version="1",adapter="",job="monitor"}', "10x200"),
                _series('tuneship_generation_reference_exact_match{model="few",version="1",job="triton"}', "0.85x200")],
     "expect": [({"model": "chat", "version": "2", "severity": "page"},
                 "chat v2: reviewed answers match 0.700, over 5 points under its reference")]},
    {"alert": "LiveAnswerRatingsLow", "eval_time": "40m",
     "series": [_series('tuneship_live_answer_good_share{model="chat",version="1",adapter="support"}', "0.5x200"),
                _series('tuneship_live_answers_rated{model="chat",version="1",adapter="support"}', "60x200"),
                _series('tuneship_live_answer_good_share{model="chat",version="1",adapter=""}', "0.9x200"),
                _series('tuneship_live_answers_rated{model="chat",version="1",adapter=""}', "60x200"),
                _series('tuneship_live_answer_good_share{model="new",version="1",adapter=""}', "0.2x200"),
                _series('tuneship_live_answers_rated{model="new",version="1",adapter=""}', "5x200")],
     "expect": [({"model": "chat", "version": "1", "adapter": "support", "severity": "ticket"},
                 "chat v1 (support): 50% of rated answers are rated good (under 70%)")]},
    {"alert": "PredictionDrift", "eval_time": "50m",
     "series": [*_labels("drifted", {"a": 12, "b": 3}, {"a": 0.5, "b": 0.5}),
                *_labels("steady", {"a": 8, "b": 7}, {"a": 0.5, "b": 0.5}),
                *_labels("quiet", {"a": 0.1, "b": 0.0}, {"a": 0.5, "b": 0.5})],  # drifted, but 24 predictions
     "expect": [({"model": "drifted", "version": "1", "severity": "ticket"},
                 "drifted v1: label shares drifted from the reference (PSI 0.42 > 0.25)")]},
    {"alert": "PredictionDrift", "eval_time": "10m",  # drifted, but not for 15 minutes yet
     "series": _labels("drifted", {"a": 12, "b": 3}, {"a": 0.5, "b": 0.5}),
     "expect": []},
    {"alert": "ConfidenceDrift", "eval_time": "50m",
     "series": [*_bins("unsure", {"0.50": 7, "0.90": 0, "0.99": 3}, {"0.50": 0.0, "0.90": 0.2, "0.99": 0.8}),
                *_bins("sure", {"0.50": 0, "0.90": 2, "0.99": 8}, {"0.50": 0.0, "0.90": 0.2, "0.99": 0.8})],
     "expect": [({"model": "unsure", "version": "1", "severity": "ticket"},
                 "unsure v1: confidence distribution drifted from the reference (PSI 6.12 > 0.25)")]},
    {"alert": "PredictionConfidenceDropped", "eval_time": "50m",
     "series": [*_confidence("doubtful", 10, 6, 0.9), *_confidence("fine", 10, 8.5, 0.9)],
     "expect": [({"model": "doubtful", "version": "1", "severity": "ticket"},
                 "doubtful v1: mean confidence 0.60 is over 0.1 below the reference")]},
    {"alert": "EstimatedAccuracyBelowReference", "eval_time": "50m",
     "series": [*_estimated("unsure", {"0.50": 7, "0.99": 3}, 0.95),  # 0.7*0.6 + 0.3*0.99 = 0.717
                *_estimated("sure", {"0.50": 1, "0.99": 9}, 0.95),  # 0.951
                *_estimated("quiet", {"0.50": 0.1, "0.99": 0.0}, 0.95)],  # unsure, but 24 predictions
     "expect": [({"model": "unsure", "version": "1", "severity": "ticket"},
                 "unsure v1: estimated accuracy 0.717 is over 5 points under its reference (no labels needed)")]},
    {"alert": "LiveAccuracyBelowReference", "eval_time": "40m",
     "series": [_series('tuneship_live_accuracy{model="m",version="2",job="monitor"}', "0.8x200"),
                _series('tuneship_live_labelled{model="m",version="2",job="monitor"}', "120x200"),
                _series('tuneship_reference_accuracy{model="m",version="2",job="triton"}', "0.9x200"),
                _series('tuneship_live_accuracy{model="m",version="1",job="monitor"}', "0.88x200"),  # within 5
                _series('tuneship_live_labelled{model="m",version="1",job="monitor"}', "120x200"),
                _series('tuneship_reference_accuracy{model="m",version="1",job="triton"}', "0.9x200"),
                _series('tuneship_live_accuracy{model="few",version="1",job="monitor"}', "0.5x200"),  # 10 labels
                _series('tuneship_live_labelled{model="few",version="1",job="monitor"}', "10x200"),
                _series('tuneship_reference_accuracy{model="few",version="1",job="triton"}', "0.9x200")],
     "expect": [({"model": "m", "version": "2", "severity": "page"},
                 "m v2: live accuracy 0.800 is over 5 points under its reference")]},
]


def test_every_alert_fires_and_stays_quiet_as_expected(tmp_path: Path) -> None:
    runbooks = _runbooks()
    assert {case["alert"] for case in CASES} == set(runbooks), "each alert needs a case"
    tests = []
    for case in CASES:
        expected = [{"exp_labels": labels, "exp_annotations": {
                        "summary": summary,
                        "runbook": runbooks[case["alert"]].replace("{{ $labels.model }}", labels.get("model", ""))}}
                    for labels, summary in case["expect"]]
        tests.append({"interval": "15s", "input_series": case["series"],
                      "alert_rule_test": [{"eval_time": case["eval_time"], "alertname": case["alert"],
                                           "exp_alerts": expected}]})
    spec = {"rule_files": [str(PROMETHEUS / "recording_rules.yml"), str(PROMETHEUS / "alert_rules.yml")],
            "evaluation_interval": "15s", "tests": tests}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_rules_compute_what_they_say(tmp_path: Path) -> None:
    series = [
        _series('nv_inference_request_success{model="m",version="1"}', "0+60x20"),  # 4 requests/s
        _series('nv_inference_request_duration_us{model="m",version="1"}', "0+1200000x20"),  # 20 ms each
        _series('nv_inference_queue_duration_us{model="m",version="1"}', "0+300000x20"),  # 5 ms each
        _series('nv_inference_compute_infer_duration_us{model="m",version="1"}', "0+600000x20"),
        _series('nv_inference_compute_input_duration_us{model="m",version="1"}', "0+60000x20"),
        _series('nv_inference_compute_output_duration_us{model="m",version="1"}', "0+60000x20"),
        _series('nv_inference_count{model="m",version="1"}', "0+240x20"),
        _series('nv_inference_exec_count{model="m",version="1"}', "0+30x20"),
        _series('tuneship_generation_batch_size_sum{model="m",version="1"}', "0+600x20"),  # 6 rows a step
        _series('tuneship_generation_batch_size_count{model="m",version="1"}', "0+100x20"),
        _series('tuneship_generation_prompt_tokens_total{model="m",version="1"}', "0+400x20"),
        _series('tuneship_generation_cached_prompt_tokens_total{model="m",version="1"}', "0+200x20"),
    ]
    expected = [
        ("model_version:generation_batch_size:avg1m", 6.0),
        ("model_version:generation_cached_prompt_share:rate5m", 0.5),
        ("model_version:triton_request_rate:rate1m", 4.0),
        ("model_version:triton_error_ratio:rate5m", 0.0),
        ("model_version:triton_request_latency_ms:avg1m", 20.0),
        ("model_version:triton_queue_latency_ms:avg1m", 5.0),
        ("model_version:triton_compute_latency_ms:avg1m", 12.0),
        ("model_version:triton_batch_size:avg1m", 8.0),
    ]
    spec = {"rule_files": [str(PROMETHEUS / "recording_rules.yml")], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": [
                {"expr": name, "eval_time": "4m",
                 "exp_samples": [{"labels": f'{name}{{model="m",version="1"}}', "value": value}]}
                for name, value in expected]}]}
    path = tmp_path / "recording_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_generation_rules_split_tokens_by_adapter(tmp_path: Path) -> None:
    series = [_series('tuneship_generation_tokens_total{model="chat",version="1"}', "0+300x20"),  # 20 tokens/s
              _series('tuneship_generation_tokens_total{model="chat",version="1",adapter="support"}', "0+150x20")]
    name = "model_version_adapter:generation_tokens:rate1m"
    spec = {"rule_files": [str(PROMETHEUS / "recording_rules.yml")], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": [
                {"expr": name, "eval_time": "4m", "exp_samples": [
                    {"labels": f'{name}{{model="chat",version="1"}}', "value": 20.0},
                    {"labels": f'{name}{{adapter="support",model="chat",version="1"}}', "value": 10.0}]},
                {"expr": "model_version:generation_tokens:rate1m", "eval_time": "4m", "exp_samples": [
                    {"labels": 'model_version:generation_tokens:rate1m{model="chat",version="1"}',
                     "value": 30.0}]}]}]}
    path = tmp_path / "adapter_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_quality_recording_rules_compute_shares_psi_and_mean_confidence(tmp_path: Path) -> None:
    from tuneship.exporter.quality import psi

    series = [*_labels("m", {"a": 12, "b": 3}, {"a": 0.5, "b": 0.5}),
              *(_series(f'tuneship_prediction_confidence_total{{model="m",version="1",bin="{name}"}}', "0+7.5x240")
                for name in ("0.50", "0.90")),
              *(_series(f'tuneship_reference_bin_accuracy{{model="m",version="1",bin="{name}"}}', f"{value}x240")
                for name, value in (("0.50", 0.6), ("0.90", 0.85))),
              _series('tuneship_prediction_confidence_sum{model="m",version="1"}', "0+10.5x240"),
              _series('tuneship_reference_mean_confidence{model="m",version="1"}', "0.9x240")]
    expected = [
        ('model_version_label:prediction_share:rate30m{label="a"}', {"label": "a"}, 0.8),
        ("model_version:predictions:rate30m", {}, 1.0),
        ("model_version:prediction_label_psi:30m", {}, round(psi({"a": 0.8, "b": 0.2}, {"a": 0.5, "b": 0.5}), 6)),
        ("model_version:prediction_confidence:mean30m", {}, 0.7),
        ("model_version:estimated_accuracy:30m", {}, 0.725),  # 0.5 of answers at 0.6, 0.5 at 0.85
    ]
    tests = [{"expr": f"round({name}, 0.000001)", "eval_time": "40m", "exp_samples": [
        {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in {"model": "m", "version": "1", **extra}.items()) + "}",
         "value": value}]} for name, extra, value in expected]
    spec = {"rule_files": [str(PROMETHEUS / "recording_rules.yml")], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": tests}]}
    path = tmp_path / "quality_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_generation_quality_rules_compute_shares_and_psi(tmp_path: Path) -> None:
    from tuneship.exporter.quality import psi

    series = [*_answers("chat", {"0": 1, "8": 6, "256": 3}, {"0": 0.0, "8": 0.9, "256": 0.1},
                        {"positive": 4, "negative": 4, "other": 2}, {"positive": 0.5, "negative": 0.5, "other": 0.0}),
              _series('tuneship_generation_requests_total{model="chat",version="1",finish_reason="length"}',
                      "0+3x240"),
              # An adapter's finishes are not the base model's answers.
              _series('tuneship_generation_requests_total{model="chat",version="1",finish_reason="length",'
                      'adapter="support"}', "0+30x240"),
              _series('tuneship_generation_empty_answers_total{model="chat",version="1"}', "0+1x240")]
    expected = [
        ("model_version:generation_answers:rate30m", {}, round(10 / 15, 6)),
        ('model_version_bin:generation_length_share:rate30m{bin="256"}', {"bin": "256"}, 0.3),
        ("model_version:generation_length_psi:30m", {},
         round(psi({"0": 0.1, "8": 0.6, "256": 0.3}, {"0": 0.0, "8": 0.9, "256": 0.1}), 6)),
        ("model_version:generation_label_psi:30m", {},
         round(psi({"positive": 0.4, "negative": 0.4, "other": 0.2},
                   {"positive": 0.5, "negative": 0.5, "other": 0.0}), 6)),
        ("model_version:generation_length_finish_share:rate30m", {}, 0.3),
        ("model_version:generation_empty_share:rate30m", {}, 0.1),
    ]
    tests = [{"expr": f"round({name}, 0.000001)", "eval_time": "40m", "exp_samples": [
        {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in {"model": "chat", "version": "1", **extra}.items()) + "}",
         "value": value}]} for name, extra, value in expected]
    spec = {"rule_files": [str(PROMETHEUS / "recording_rules.yml")], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": tests}]}
    path = tmp_path / "generation_quality_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_refused_inputs_rule_covers_text_and_image_pipelines(tmp_path: Path) -> None:
    series = [_series('tuneship_texts_refused_total{model="reviews",version="1",reason="empty"}', "0+30x40"),
              _series('tuneship_images_refused_total{model="photos",version="2",reason="unreadable"}', "0+60x40")]
    name = "model_version_reason:texts_refused:rate5m"
    spec = {"rule_files": [str(PROMETHEUS / "recording_rules.yml")], "evaluation_interval": "15s",
            "tests": [{"interval": "15s", "input_series": series, "promql_expr_test": [
                {"expr": name, "eval_time": "8m", "exp_samples": [
                    {"labels": f'{name}{{model="photos",reason="unreadable",version="2"}}', "value": 4.0},
                    {"labels": f'{name}{{model="reviews",reason="empty",version="1"}}', "value": 2.0}]}]}]}
    path = tmp_path / "refused_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
