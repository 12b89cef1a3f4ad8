"""Triton Python model: text generation with onnxruntime-genai, streamed one decoded piece per response.

Installed as `<name>/<version>/model.py` next to the onnxruntime-genai model folder (`model.onnx`,
`genai_config.json`, tokenizer files, `chat_template.jinja`), with `model_transaction_policy { decoupled: true }`.
Needs `onnxruntime-genai` and `numpy<2` in the Python backend's environment.

Inputs follow Triton's vLLM and TensorRT-LLM backends, so Triton's `/generate` and `/generate_stream` endpoints
and existing LLM tools work unchanged: `text_input` (or `messages`, a JSON list of chat messages, formatted with
the model's own chat template), `stream`, `sampling_parameters` (a JSON object, as the vLLM backend takes it),
and the sampling inputs `max_tokens`, `min_tokens`, `temperature`, `top_p`, `top_k`, `repetition_penalty`,
`random_seed`, `stop`; request parameters (the generate endpoint's "parameters") are read too. A request may
constrain its answer with one of `guided_choice` (a list of answers), `guided_regex` or `guided_json` (a JSON
schema), in `sampling_parameters` or the request parameters, as vLLM takes them, name a `session_id` whose
next turn reuses this one's key/value cache, and name an `adapter` (a LoRA adapter published in the model's
`adapters/` folder, `tuneship export --adapter-of`; watched, so publishing or removing one needs no reload).

Output: `text_output`, one piece per response when streaming (the last carries `finish_reason`,
`completion_tokens`, `prompt_tokens` and `cached_prompt_tokens`, the prompt tokens served from a cache), the whole
text in one response otherwise. Requests are continuously batched (`tuneship_batcher.py`, copied beside this file:
each step decodes the next token of every running request in one forward pass, and a new request joins at the next
step); constrained requests, and every request with `batching` "per-request", run their own og.Generator on their
own thread. A cancelled request (the caller went away) stops generating.
"""

import json
import os
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tuneship_answers import LENGTH_EDGES, REFERENCE_FILE, label_of, length_bin
from tuneship_guidance import guidance, json_object
from tuneship_lora import LoraWeights, check_name, published

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
ANSWER_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]
TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
SAMPLING_NAMES = ("max_tokens", "min_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "random_seed",
                  "stop", "stream", "guided_choice", "guided_regex", "guided_json", "session_id", "adapter", "raw",
                  "exclude_input_in_output", "tuneship_probe", "stream_interval_ms")
GUIDED_NAMES = {"lark_grammar": "guided_choice", "regex": "guided_regex", "json_schema": "guided_json"}
# Other servers' names for the same options (vLLM's sampling parameters, TensorRT-LLM's inputs), as Triton's
# OpenAI frontend sends them.
ALIASES = {"seed": "random_seed", "lora_name": "adapter", "stop_words": "stop"}
MAX_SESSION_ID = 128
MAX_STREAM_INTERVAL_MS = 1000


def _shared_length(first: list[int], second: list[int]) -> int:
    """How many leading tokens two renderings of the chat template have in common."""
    shared = 0
    while shared < min(len(first), len(second)) and first[shared] == second[shared]:
        shared += 1
    return shared


def _invalid(message: str) -> Any:
    """The caller's mistake. A gRPC stream carries an error's message only, so it starts with its status (the
    client types it by that); unary calls and the generate endpoints get the code too (400 over HTTP)."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    message = f"invalid argument: {message}"
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def _exhausted(message: str) -> Any:
    """A full queue: RESOURCE_EXHAUSTED (the client's retry policy knows it); the message starts with it too."""
    code = getattr(pb_utils.TritonError, "RESOURCE_EXHAUSTED", None) or getattr(pb_utils.TritonError, "UNAVAILABLE",
                                                                                  None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


def _scalar(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    if values.size == 0:
        return None
    if name in ("stop", "stop_words"):
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value.item()


class ConstraintNotFollowed(ValueError):
    """No token of this model can continue the request's constraint: the caller's error, found while generating."""


def _answer_labels(directory: str) -> list[str]:
    """The closed set of answers the model was tuned on (labels.txt, written at export), or none."""
    try:
        with open(os.path.join(directory, "labels.txt"), encoding="utf-8") as handle:
            return [line.strip().lower() for line in handle if line.strip()]
    except OSError:
        return []


def _reference(directory: str) -> dict[str, Any] | None:
    """The version's behaviour on held-out prompts at export (reference.json), or None for a version without."""
    try:
        with open(os.path.join(directory, REFERENCE_FILE), encoding="utf-8") as handle:
            reference = json.load(handle)
    except (OSError, ValueError):
        return None
    return reference if isinstance(reference, dict) else None


class _Discarded:
    """A metric that counts nothing: what a liveness probe's request updates."""

    def increment(self, _value: float) -> None:
        pass

    def observe(self, _value: float) -> None:
        pass


_DISCARDED = _Discarded()
PROBE_METRICS = types.SimpleNamespace(
    tokens=_DISCARDED, prompt_tokens=_DISCARDED, ttft=_DISCARDED, cached_tokens=_DISCARDED,
    answer_tokens=_DISCARDED, empty_answers=_DISCARDED,
    finished={reason: _DISCARDED for reason in ("stop", "length", "cancelled", "error")})


def _special_tokens(directory: str) -> list[str]:
    """The tokenizer's special tokens as text (`<|im_start|>`, ...): a prompt holding one is already templated."""
    try:
        with open(os.path.join(directory, "tokenizer.json"), encoding="utf-8") as handle:
            added = json.load(handle).get("added_tokens", [])
    except (OSError, ValueError):
        return []
    return [t["content"] for t in added if t.get("special") and len(t.get("content", "")) > 2]


def _config(og: Any, directory: str, threads: int) -> Any:
    """The model folder's config with its CPU threads set: onnxruntime-genai's default pool used one of this
    2-core machine's cores (decode 58 -> 122 tokens/s and first token 155 -> 87 ms with both)."""
    config = og.Config(directory)
    threads = threads or len(os.sched_getaffinity(0))
    if hasattr(config, "overlay"):  # onnxruntime-genai >= 0.6
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    return config


class _Outbox:
    """One stream's pieces on their way out. The model's one sender thread sends them, so the next token is
    computed while the last one travels (a send waits for the server); pieces that pile up meanwhile leave as one
    response. Everything a stream sends goes through here, in order, the final response last."""

    def __init__(self, model: "TritonPythonModel", sender: Any) -> None:
        self.model, self.sender = model, sender
        self.lock = threading.Lock()
        self.pending, self.scheduled, self.failed = "", False, False

    def piece(self, text: str, now: bool = False) -> None:
        """`now`: send from the calling thread. onnxruntime-genai holds the GIL while it computes a token, so a
        piece left to the sender thread waits for the next token (about 8 ms); the first piece, whose wait is
        the caller's time to first token, goes at once."""
        if now:
            self._send(self.model._response(text))
            return
        with self.lock:
            self.pending += text
            if self.scheduled:
                return
            self.scheduled = True
        self.model.outgoing.submit(self._flush)

    def final(self, response: Any = None) -> None:
        self.model.outgoing.submit(self._send, response, FINAL)

    def _flush(self) -> None:
        with self.lock:
            piece, self.pending, self.scheduled = self.pending, "", False
        if piece:
            self._send(self.model._response(piece))

    def _send(self, response: Any = None, flags: int = 0) -> None:
        if self.failed:
            return
        try:
            self.model._send(self.sender, response, flags)
        except Exception:  # the caller is gone (or the server refused): the generation loop stops at its next token
            self.failed = True


class _Progress:
    """One batched request's answer so far (the batcher's thread updates it)."""

    def __init__(self) -> None:
        self.text, self.sent, self.count = "", 0, 0
        self.checked = time.perf_counter()
        self.last_sent = 0.0  # when the last piece left
        self.cancelled = False


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime_genai as og

        self.og = og
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.default_max_tokens = int(parameters.get("default_max_tokens", "256"))
        self.max_tokens_limit = int(parameters.get("max_tokens_limit", "2048"))
        self.max_prompt_tokens = int(parameters.get("max_prompt_tokens", "4096"))
        self.max_input_bytes = int(parameters.get("max_input_bytes", str(256 * 1024)))
        # Pieces of a batched stream leave at most this often: each is a round trip to the server between two
        # decode steps (about 0.5 ms on 2 cores, a tenth of a one-row step, and the server's and the caller's
        # work on it takes the cores ONNX Runtime runs on). The first piece always leaves at once.
        self.stream_interval_s = int(parameters.get("stream_interval_ms", "0")) / 1000
        directory = os.path.join(args["model_repository"], args["model_version"])
        self.model = og.Model(_config(og, directory, int(parameters.get("intra_op_threads", "0"))))
        self.tokenizer = og.Tokenizer(self.model)
        self.eos = {int(t) for t in self.tokenizer.eos_token_ids}
        with open(os.path.join(directory, "genai_config.json"), encoding="utf-8") as handle:
            self.context_length = int(json.load(handle)["model"].get("context_length", 1 << 30))
        template_path = os.path.join(directory, "chat_template.jinja")
        self.template = None
        if os.path.isfile(template_path):
            with open(template_path, encoding="utf-8") as handle:
                self.template = handle.read()
        self.markers = _special_tokens(directory)
        self.answer_labels = _answer_labels(directory)
        self.max_concurrency = int(parameters.get("max_concurrency", "8"))
        # Requests beyond the running ones wait in arrival order (the executor's queue), up to max_queue; more
        # are refused at once, so a burst gets a clear answer instead of waiting without bound.
        self.max_queue = int(parameters.get("max_queue", str(4 * self.max_concurrency)))
        self.executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="generate")
        self.running = 0
        # Continuous batching (tuneship_batcher.py beside this file): every unconstrained request's next token
        # comes from one forward pass of all running ones. Constrained requests keep their own og.Generator,
        # whose grammar guidance the batcher does not have.
        self.batcher: Any = None
        self.batch_size: Any = None  # the batch-size histogram, made with the other metrics below
        if parameters.get("batching", "continuous") == "continuous":
            from tuneship_batcher import ContinuousBatcher, Sequence, SessionCache

            self.Sequence = Sequence
            self.sessions = SessionCache(int(parameters.get("max_sessions", "64")),
                                         int(float(parameters.get("session_cache_mb", "1024")) * 2**20),
                                         float(parameters.get("session_ttl_s", "600")))
            self.batcher = ContinuousBatcher(
                directory, slots=self.max_concurrency, threads=int(parameters.get("intra_op_threads", "0")),
                max_capacity=min(self.context_length, self.max_prompt_tokens + self.max_tokens_limit),
                on_step=self._stepped, sessions=self.sessions)
            if self.template is not None:
                self.batcher.share_prefix(self._template_opening())
                self.batcher.set_turn_end(self._turn_end())
        # LoRA adapters beside the versions (<model>/adapters/<name>/), for this version's weights only; watched,
        # and looked at again when a request names one not loaded yet.
        self.model_dir = args["model_repository"]
        self.weights = ""
        try:
            with open(os.path.join(directory, "tuneship_source.json"), encoding="utf-8") as handle:
                self.weights = str(json.load(handle).get("weights", ""))
        except (OSError, ValueError):
            pass
        self.adapter_stamps: dict[str, float] = {}
        self.adapter_weights: dict[str, Any] = {}
        self.adapter_lock = threading.Lock()
        self.adapter_metrics: dict[str, Any] = {}
        self.stopping = threading.Event()
        self.adapter_poll_s = float(parameters.get("adapter_poll_s", "2"))
        if self.batcher is not None:
            self._scan_adapters()
            threading.Thread(target=self._watch_adapters, name="adapters", daemon=True).start()
        self.outgoing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send")
        self.in_flight = 0
        self.lock = threading.Lock()
        # One call at a time into the stub's IPC with the server (responses, cancellation checks, metrics):
        # concurrent calls from several threads crash Triton 2.51's Python backend
        # (boost::interprocess::lock_exception in the server process).
        self.ipc = threading.Lock()
        labels = {"model": args["model_name"], "version": args["model_version"]}
        # Families are kept on the model: a Metric outlives its family only as long as the family is referenced.
        gauge = pb_utils.MetricFamily.GAUGE
        self.families = {
            "tokens": pb_utils.MetricFamily("tuneship_generation_tokens_total",
                                            "Tokens generated (completion tokens)", pb_utils.MetricFamily.COUNTER),
            "prompt": pb_utils.MetricFamily("tuneship_generation_prompt_tokens_total",
                                            "Prompt tokens read", pb_utils.MetricFamily.COUNTER),
            "requests": pb_utils.MetricFamily("tuneship_generation_requests_total",
                                              "Generation requests by how they finished",
                                              pb_utils.MetricFamily.COUNTER),
            "ttft": pb_utils.MetricFamily("tuneship_generation_time_to_first_token_seconds",
                                          "Server-side time from request to first generated token",
                                          pb_utils.MetricFamily.HISTOGRAM),
            "running": pb_utils.MetricFamily("tuneship_generation_running", "Requests generating now",
                                             pb_utils.MetricFamily.GAUGE),
            "queued": pb_utils.MetricFamily("tuneship_generation_queued",
                                            "Requests waiting for a generation slot", pb_utils.MetricFamily.GAUGE),
            "queue_time": pb_utils.MetricFamily("tuneship_generation_queue_seconds",
                                                "Time a request waited for a generation slot",
                                                pb_utils.MetricFamily.HISTOGRAM),
            "batch": pb_utils.MetricFamily("tuneship_generation_batch_size",
                                           "Requests decoded together per step (continuous batching)",
                                           pb_utils.MetricFamily.HISTOGRAM),
            "cached": pb_utils.MetricFamily("tuneship_generation_cached_prompt_tokens_total",
                                            "Prompt tokens served from a kept key/value cache (a session's "
                                            "earlier turns, the chat template's opening) instead of prefilled",
                                            pb_utils.MetricFamily.COUNTER),
            "sessions": pb_utils.MetricFamily("tuneship_generation_sessions",
                                              "Chat sessions whose key/value cache is kept",
                                              pb_utils.MetricFamily.GAUGE),
            "refused": pb_utils.MetricFamily("tuneship_generation_refused_total",
                                             "Requests refused before generating, by reason",
                                             pb_utils.MetricFamily.COUNTER),
            # What the answers are like, not only how fast they come.
            "answer_tokens": pb_utils.MetricFamily("tuneship_generation_answer_tokens",
                                                   "Tokens per finished answer (finish reason stop or length)",
                                                   pb_utils.MetricFamily.HISTOGRAM),
            "empty": pb_utils.MetricFamily("tuneship_generation_empty_answers_total",
                                           "Answers that ended before their first token",
                                           pb_utils.MetricFamily.COUNTER),
            "labels": pb_utils.MetricFamily("tuneship_generation_answers_total",
                                            "Finished answers by label, for a model tuned to answer from a closed set "
                                            "(labels.txt; its first word, lower-cased; 'other' outside the set)",
                                            pb_utils.MetricFamily.COUNTER),
            "length_bins": pb_utils.MetricFamily("tuneship_generation_answer_length_total",
                                                 "Finished answers by length bin (bin: lower edge in tokens)",
                                                 pb_utils.MetricFamily.COUNTER),
            # The version's behaviour on held-out prompts at export (reference.json), for drift rules.
            "ref_finish": pb_utils.MetricFamily("tuneship_generation_reference_finish_share",
                                                "Share of held-out answers at export by finish reason", gauge),
            "ref_length": pb_utils.MetricFamily("tuneship_generation_reference_length_share",
                                                "Share of held-out answers at export by length bin", gauge),
            "ref_labels": pb_utils.MetricFamily("tuneship_generation_reference_label_share",
                                                "Share of held-out answers at export by label", gauge),
            "ref_empty": pb_utils.MetricFamily("tuneship_generation_reference_empty_share",
                                               "Share of held-out answers at export that were empty", gauge),
            "ref_exact": pb_utils.MetricFamily("tuneship_generation_reference_exact_match",
                                               "Exact match of held-out answers at export (closed-set models)",
                                               gauge),
            "constrained": pb_utils.MetricFamily("tuneship_generation_constrained_requests_total",
                                                 "Requests with a constraint on their answer, by constraint",
                                                 pb_utils.MetricFamily.COUNTER),
            "constraint": pb_utils.MetricFamily("tuneship_generation_constraint_failures_total",
                                                "Constrained requests whose constraint this model's tokens could not "
                                                "follow, by constraint", pb_utils.MetricFamily.COUNTER),
        }
        self.tokens = self.families["tokens"].Metric(labels=labels)
        self.prompt_tokens = self.families["prompt"].Metric(labels=labels)
        self.ttft = self.families["ttft"].Metric(labels=labels, buckets=TTFT_BUCKETS)
        self.finished = {reason: self.families["requests"].Metric(labels={**labels, "finish_reason": reason})
                         for reason in ("stop", "length", "cancelled", "error")}
        self.running_gauge = self.families["running"].Metric(labels=labels)
        self.queued_gauge = self.families["queued"].Metric(labels=labels)
        self.queue_time = self.families["queue_time"].Metric(labels=labels, buckets=TTFT_BUCKETS)
        self.batch_size = self.families["batch"].Metric(labels=labels, buckets=[1, 2, 3, 4, 6, 8, 12, 16, 32, 64])
        self.refused = {reason: self.families["refused"].Metric(labels={**labels, "reason": reason})
                        for reason in ("queue_full", "expired")}
        self.cached_tokens = self.families["cached"].Metric(labels=labels)
        self.answer_tokens = self.families["answer_tokens"].Metric(labels=labels, buckets=ANSWER_BUCKETS)
        self.empty_answers = self.families["empty"].Metric(labels=labels)
        self.by_label = {label: self.families["labels"].Metric(labels={**labels, "label": label})
                         for label in [*self.answer_labels, "other"]} if self.answer_labels else {}
        self.constraint_failures = {name: self.families["constraint"].Metric(labels={**labels, "constraint": name})
                                    for name in GUIDED_NAMES.values()}
        self.constrained = {name: self.families["constrained"].Metric(labels={**labels, "constraint": name})
                            for name in GUIDED_NAMES.values()}
        self.sessions_gauge = self.families["sessions"].Metric(labels=labels)
        self.labels = labels
        self.reference = _reference(directory)
        self.length_edges = [int(e) for e in (self.reference or {}).get("length_edges", LENGTH_EDGES)]
        # Every bin exists from the start (at 0), so a length never seen still counts in the shares.
        self.by_length = {str(edge): self.families["length_bins"].Metric(labels={**labels, "bin": str(edge)})
                          for edge in self.length_edges}
        self.reference_gauges = self._reference_gauges(labels)

    def _reference_gauges(self, labels: dict[str, str]) -> list[Any]:
        """The reference's shares as gauges (kept: a gauge lives as long as its Metric object)."""
        reference = self.reference
        if reference is None:
            return []
        values: list[tuple[str, dict[str, str], Any]] = []
        values += [("ref_finish", {"finish_reason": k}, v) for k, v in reference.get("finish_share", {}).items()]
        values += [("ref_length", {"bin": k}, v) for k, v in reference.get("length_share", {}).items()]
        if self.answer_labels:
            values += [("ref_labels", {"label": k}, v) for k, v in reference.get("label_share", {}).items()]
        values.append(("ref_empty", {}, reference.get("empty_share")))
        values.append(("ref_exact", {}, reference.get("exact_match")))
        gauges = []
        for family, extra, value in values:
            if isinstance(value, (int, float)):
                metric = self.families[family].Metric(labels={**labels, **extra})
                metric.set(float(value))
                gauges.append(metric)
        return gauges

    # -- adapters -----------------------------------------------------------------------------------------

    def _watch_adapters(self) -> None:
        while not self.stopping.wait(self.adapter_poll_s):
            try:
                self._scan_adapters()
            except Exception as error:  # a broken adapter must not stop the watcher (or the model)
                self._log(f"adapters: {error}")

    def _scan_adapters(self) -> None:
        """Load what changed in the adapters folder and hand the whole set to the batcher."""
        with self.adapter_lock:
            found = published(self.model_dir)
            stamps = {name: stamp for name, (stamp, _) in found.items()}
            if stamps == self.adapter_stamps:
                return
            loaded = {}
            for name, (stamp, folder) in found.items():
                if self.adapter_stamps.get(name) == stamp and name in self.adapter_weights:
                    loaded[name] = self.adapter_weights[name]
                    continue
                try:
                    weights = LoraWeights.load(folder)
                except Exception as error:
                    self._log(f"adapter {name}: cannot be loaded ({error}); skipped")
                    continue
                base = str(weights.info.get("base_weights", ""))
                if self.weights and base != self.weights:
                    self._log(f"adapter {name} was tuned on weights {base}, this version serves {self.weights}; "
                              "skipped (export it again for this version)")
                    continue
                loaded[name] = weights
            self.batcher.set_adapters(loaded)
            self.adapter_weights, self.adapter_stamps = loaded, stamps

    def _adapter(self, options: dict[str, Any], guided: bool) -> str | None:
        name = options.get("adapter")
        if name is None or name == "":
            return None
        if not isinstance(name, str):
            raise ValueError("adapter must be the name of a published adapter")
        check_name(name)
        if guided:
            raise ValueError("adapter: constrained answers (guided_*) are generated without adapters; leave one out")
        if self.batcher is None:
            raise ValueError("adapter: this model is served with batching per-request, which has no adapters")
        if name not in self.batcher.adapters():
            self._scan_adapters()
            if name not in self.batcher.adapters():
                known = ", ".join(sorted(self.batcher.adapters())) or "none"
                raise ValueError(f"adapter {name!r} is not published for this model (published: {known})")
        return name

    def _metrics_of(self, adapter: str | None) -> Any:
        """The per-request metrics with the adapter's label (the base model's carry none)."""
        if adapter is None:
            return self
        metrics = self.adapter_metrics.get(adapter)
        if metrics is not None:
            return metrics
        labels = {**self.labels, "adapter": adapter}
        with self.ipc:  # making a metric is a call into the server, like any other
            metrics = self.adapter_metrics.get(adapter) or types.SimpleNamespace(
                tokens=self.families["tokens"].Metric(labels=labels),
                prompt_tokens=self.families["prompt"].Metric(labels=labels),
                ttft=self.families["ttft"].Metric(labels=labels, buckets=TTFT_BUCKETS),
                finished={reason: self.families["requests"].Metric(labels={**labels, "finish_reason": reason})
                          for reason in ("stop", "length", "cancelled", "error")},
                cached_tokens=self.families["cached"].Metric(labels=labels),
                answer_tokens=self.families["answer_tokens"].Metric(labels=labels, buckets=ANSWER_BUCKETS),
                empty_answers=self.families["empty"].Metric(labels=labels))
            self.adapter_metrics[adapter] = metrics
        return metrics

    def _log(self, message: str) -> None:
        logger = getattr(pb_utils, "Logger", None)
        if logger is not None:
            logger.log_warn(message)

    def _template_opening(self) -> list[int]:
        """The tokens every chat request starts with (the template's system prompt and first role marker): the
        common prefix of two different conversations."""
        first, second = (self._chat_ids([{"role": "user", "content": text}]) for text in ("a", "Zebra 42?"))
        return first[:_shared_length(first, second)]

    def _turn_end(self) -> list[int]:
        """The tokens the template puts after an answer, from its end marker up to the next user's words: the
        common part of two follow-ups of one answer, after the first turn's prompt and the answer. Empty when the
        template renders the first turn differently once it is followed (the batcher then keeps what it has)."""
        first = [{"role": "user", "content": "a"}]
        prompt = self._chat_ids(first)
        answered = [*first, {"role": "assistant", "content": "Fine"}]
        one, two = (self._chat_ids([*answered, {"role": "user", "content": question}])
                    for question in ("Zebra 42?", "Quick brown?"))
        if one[:len(prompt)] != prompt:
            return []
        tail = one[len(prompt):_shared_length(one, two)]
        ends = [i for i, token in enumerate(tail) if token in self.eos]
        return tail[ends[0]:] if ends else []

    def _stepped(self, rows: int) -> None:
        """After each decode step (the batcher's thread): the batch size, and the kept sessions now and then."""
        self._count(self.batch_size, rows, observe=True)
        if self.batcher.steps % 64 == 0:
            self.outgoing.submit(self._set, self.sessions_gauge, len(self.sessions))

    # -- one request --------------------------------------------------------------------------------------

    def _options(self, request: Any) -> dict[str, Any]:
        """Sampling options: request parameters, then `sampling_parameters` JSON, then the named inputs."""
        options: dict[str, Any] = {}
        raw_parameters = request.parameters()
        if raw_parameters:
            options.update({ALIASES.get(k, k): v for k, v in json.loads(raw_parameters).items()
                            if ALIASES.get(k, k) in SAMPLING_NAMES})
        sampling = _scalar(request, "sampling_parameters")
        if sampling:
            options.update({ALIASES.get(k, k): v for k, v in json_object(sampling, "sampling_parameters").items()})
        for name in (*SAMPLING_NAMES, *ALIASES):
            value = _scalar(request, name)
            if value is not None:
                options[ALIASES.get(name, name)] = value
        if options.get("exclude_input_in_output", True) is False:
            raise ValueError("exclude_input_in_output false (echo the prompt) is not supported: answers never "
                             "repeat their prompt")
        if isinstance(options.get("stop"), str):
            options["stop"] = [options["stop"]]
        session = options.get("session_id")
        if session is not None and (not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_ID):
            raise ValueError(f"session_id must be a non-empty string of at most {MAX_SESSION_ID} characters")
        return options

    def _prompt(self, request: Any, options: dict[str, Any]) -> str:
        """The text the model reads. A chat model given a plain prompt would end its answer at once (it was tuned
        on its template), so a prompt without the tokenizer's special tokens becomes one user turn, as Ollama's
        generate does; a prompt that has them (Triton's OpenAI frontend sends chats already templated) or a
        request with `raw` true is read as it is."""
        text = _scalar(request, "text_input")
        messages = _scalar(request, "messages")
        if messages:
            if len(messages.encode("utf-8")) > self.max_input_bytes:
                raise ValueError(f"messages: over this model's limit of {self.max_input_bytes} bytes")
            try:
                parsed = json.loads(messages)
            except json.JSONDecodeError as error:
                raise ValueError(f"messages is not valid JSON ({error.msg})") from None
            if not isinstance(parsed, list) or not parsed or not all(
                    isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                    and isinstance(m.get("content"), str) for m in parsed):
                raise ValueError("messages must be a JSON list of {role: system|user|assistant, content: text}")
            return self._chat(parsed)
        if text is None or not str(text).strip():
            raise ValueError("text_input is empty (send a prompt, or chat messages in 'messages')")
        if len(str(text).encode("utf-8")) > self.max_input_bytes:
            raise ValueError(f"text_input: over this model's limit of {self.max_input_bytes} bytes")
        text = str(text)
        raw = options.get("raw", False)
        if not isinstance(raw, bool):
            raise ValueError(f"raw must be true or false, got {raw!r}")
        if self.template is None or raw or any(marker in text for marker in self.markers):
            return text
        return self._chat([{"role": "user", "content": text}])

    def _chat(self, messages: list[dict[str, str]]) -> str:
        """`messages` in the model's chat template, ending with the assistant's turn opened."""
        return str(self.tokenizer.apply_chat_template(json.dumps(messages), template_str=self.template,
                                                      add_generation_prompt=True))

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(self._chat(messages))]

    def _search(self, options: dict[str, Any], prompt_tokens: int) -> tuple[dict[str, Any], int]:
        max_tokens = int(options.get("max_tokens", self.default_max_tokens))
        if not 1 <= max_tokens <= self.max_tokens_limit:
            raise ValueError(f"max_tokens must be between 1 and {self.max_tokens_limit}, got {max_tokens}")
        temperature = float(options.get("temperature", 0.0))
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        # The answer ends at the model's context window (finish reason "length"), whatever max_tokens says.
        search: dict[str, Any] = {"max_length": min(prompt_tokens + max_tokens, self.context_length),
                                  "do_sample": temperature > 0}
        if temperature > 0:
            search["temperature"] = temperature
            top_p = float(options.get("top_p", 1.0))
            if not 0 < top_p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {top_p}")
            search["top_p"] = top_p
            search["top_k"] = int(options.get("top_k", 50))
            if "random_seed" in options:
                search["random_seed"] = int(options["random_seed"])
        min_tokens = int(options.get("min_tokens", 0))
        if not 0 <= min_tokens <= max_tokens:
            raise ValueError(f"min_tokens must be between 0 and max_tokens ({max_tokens}), got {min_tokens}")
        if min_tokens:
            search["min_length"] = min(prompt_tokens + min_tokens, search["max_length"])
        penalty = float(options.get("repetition_penalty", 1.0))
        if penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
        search["repetition_penalty"] = penalty
        return search, max_tokens

    def _generate(self, request: Any, sender: Any, arrived: float) -> None:
        started = time.perf_counter()
        outbox = _Outbox(self, sender)
        with self.lock:
            self.running += 1
            self._gauges()
        self._count(self.queue_time, started - arrived, observe=True)
        try:
            if started - arrived > 0.01 and self._cancelled(request):
                # Its caller gave up (or its deadline passed) while it waited: nothing to generate for.
                self._count(self.refused["expired"], 1)
                self._count(self.finished["cancelled"], 1)
                outbox.final()
                return
            self._answer(request, outbox, arrived)
        finally:
            with self.lock:
                self.running -= 1
                self.in_flight -= 1
                self._gauges()

    def _gauges(self) -> None:
        """Running and queued requests now (called with the lock held)."""
        running, queued = self.running, self.in_flight - self.running
        self.outgoing.submit(self._set, self.running_gauge, running)
        self.outgoing.submit(self._set, self.queued_gauge, queued)

    def _set(self, gauge: Any, value: float) -> None:
        with self.ipc:
            gauge.set(value)

    def _answer(self, request: Any, outbox: "_Outbox", started: float) -> None:
        try:
            options = self._options(request)
            stream = bool(options.get("stream", False))
            ids = self.tokenizer.encode(self._prompt(request, options))
            limit = min(self.max_prompt_tokens, self.context_length - 1)
            if len(ids) > limit:
                raise ValueError(f"the prompt has {len(ids)} tokens, over this model's limit of {limit} "
                                 f"(context window {self.context_length})")
            search, max_tokens = self._search(options, len(ids))
            stops = [s for s in options.get("stop") or [] if s]
            interval = self._stream_interval(options)
            guide = guidance(options)
            adapter = self._adapter(options, guide is not None)
            generator = None if guide is None and self.batcher is not None else self._generator(search, guide)
        except (ValueError, TypeError) as error:
            self._count(self.finished["error"], 1)
            outbox.final(pb_utils.InferenceResponse(error=_invalid(str(error))))
            return
        # A liveness probe (tuneship health, the healer) is answered but counted nowhere: not traffic.
        metrics = PROBE_METRICS if options.get("tuneship_probe") is True else self._metrics_of(adapter)
        if guide is not None:
            self._count(self.constrained[GUIDED_NAMES[guide[0]]], 1)
        try:
            if generator is None:
                self._run_batched(request, outbox, list(ids), search, max_tokens, stops, stream, started,
                                  options.get("session_id"), adapter, metrics, interval)
            else:
                self._run(request, outbox, generator, ids, stops, stream, started, metrics, interval,
                          GUIDED_NAMES[guide[0]] if guide is not None else "the constraint")
        except ConstraintNotFollowed as error:  # the caller's error, named (only constrained requests raise it)
            self._count(metrics.finished["error"], 1)
            if guide is not None:
                self._count(self.constraint_failures[GUIDED_NAMES[guide[0]]], 1)
            outbox.final(pb_utils.InferenceResponse(error=_invalid(str(error))))
        except Exception as error:  # the generator failed: the caller gets an error, never a hang
            self._count(metrics.finished["error"], 1)
            outbox.final(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"generation failed: {error}")))

    def _generator(self, search: dict[str, Any], guide: tuple[str, str] | None) -> Any:
        """A generator for one request; an invalid constraint is the caller's error (ValueError), named."""
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(**search)
        if guide is None:
            return self.og.Generator(self.model, params)
        kind, data = guide
        try:
            params.set_guidance(kind, data)
            return self.og.Generator(self.model, params)
        except Exception as error:  # llguidance's parse error, with the position
            what = GUIDED_NAMES[kind]
            raise ValueError(f"{what}: cannot be applied: {' '.join(str(error).split())[:400]}") from None

    def _stream_interval(self, options: dict[str, Any]) -> float:
        """Seconds between a stream's pieces: the model's setting, or the request's `stream_interval_ms` (0: every
        token, for a caller that measures inter-token latency)."""
        value = options.get("stream_interval_ms")
        if value is None:
            return float(self.stream_interval_s)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_STREAM_INTERVAL_MS:
            raise ValueError(f"stream_interval_ms must be a number of milliseconds from 0 to "
                             f"{MAX_STREAM_INTERVAL_MS}, got {value!r}")
        return float(value) / 1000

    def _run(self, request: Any, outbox: _Outbox, generator: Any, ids: Any, stops: list[str], stream: bool,
             started: float, metrics: Any, interval: float, constraint: str = "the constraint") -> None:
        generator.append_tokens([list(ids)])
        self._count(metrics.prompt_tokens, len(ids))
        decoder = self.tokenizer.create_stream()
        text, sent, count, reason, last_sent = "", 0, 0, "length", 0.0
        checked = time.perf_counter()
        while not generator.is_done():
            # Asking whether the caller went away is a round trip to the server: every 50 ms, not every token.
            if time.perf_counter() - checked > 0.05:
                checked = time.perf_counter()
                if outbox.failed or self._cancelled(request):
                    reason = "cancelled"
                    break
            try:
                generator.generate_next_token()
            except Exception as error:  # llguidance: no token of this model can continue the constraint
                message = " ".join(str(error).split())
                if "grammar" not in message and "Parser Error" not in message:
                    raise
                raise ConstraintNotFollowed(f"{constraint}: this model's tokens cannot continue the constraint "
                                            f"({message[:300]})") from None
            token = int(generator.get_next_tokens()[0])
            if count == 0:
                self._count(metrics.ttft, time.perf_counter() - started, observe=True)
            if token in self.eos:
                reason = "stop"
                break
            count += 1
            text += decoder.decode(token)
            hit = min((text.find(s) for s in stops if s in text), default=-1)
            if hit >= 0:
                text, reason = text[:hit], "stop"
                break
            if stream:
                # Hold back what could be the start of a stop string; send the rest.
                hold = max((len(s) - 1 for s in stops), default=0)
                ready = len(text) - hold
                now = time.perf_counter()
                if ready > sent and (sent == 0 or now - last_sent >= interval):
                    outbox.piece(text[sent:ready], now=sent == 0)
                    sent, last_sent = ready, now
        self._count(metrics.tokens, count)
        self._count(metrics.finished[reason], 1)
        self._answered(metrics, reason, count, text)
        if reason == "cancelled":
            outbox.final()
            return
        final = text[sent:] if stream else text
        outbox.final(self._response(final, reason, count, len(ids), 0))

    def _run_batched(self, request: Any, outbox: _Outbox, ids: list[int], search: dict[str, Any], max_tokens: int,
                     stops: list[str], stream: bool, started: float, session: str | None, adapter: str | None,
                     metrics: Any, interval: float) -> None:
        """The request as one sequence of the continuous batch; this thread waits until it finishes (so the
        slots and the queue count it as before), the batcher's thread decodes and streams its pieces."""
        self._count(metrics.prompt_tokens, len(ids))
        decoder = self.tokenizer.create_stream()
        state = _Progress()
        hold = max((len(s) - 1 for s in stops), default=0)
        finished = threading.Event()
        outcome: dict[str, Any] = {}

        def check() -> None:
            if outbox.failed or self._cancelled(request):
                state.cancelled = True

        def on_token(token: int) -> bool:
            now = time.perf_counter()
            if state.cancelled:
                return False
            if state.count == 0:
                self._count(metrics.ttft, now - started, observe=True)
            elif now - state.checked > 0.05:
                # A round trip to the server every 50 ms, made by the sender thread: the batch's thread never
                # waits for it (eight streams asking in turn held every step behind the server's lock).
                state.checked = now
                self.outgoing.submit(check)
            state.count += 1
            state.text += decoder.decode(token)
            text = state.text
            hit = min((text.find(s) for s in stops if s in text), default=-1)
            if hit >= 0:
                state.text = text[:hit]
                return False
            if stream:
                ready = len(text) - hold
                if ready > state.sent and (state.sent == 0 or now - state.last_sent >= interval):
                    # Sent from the batch's thread, between two steps: a sender thread running beside ONNX
                    # Runtime's would take a core from its two (a one-row step 7.8 -> 8.9 ms).
                    outbox.piece(text[state.sent:ready], now=True)
                    state.sent, state.last_sent = ready, now
            return True

        def on_finish(reason: str, error: BaseException | None) -> None:
            outcome.update(reason=reason, error=error)
            finished.set()

        sequence = self.Sequence(
            ids, max_tokens, on_token, on_finish, min_new_tokens=max(0, search.get("min_length", 0) - len(ids)),
            temperature=float(search.get("temperature", 0.0)) if search.get("do_sample") else 0.0,
            top_k=int(search.get("top_k", 50)), top_p=float(search.get("top_p", 1.0)),
            repetition_penalty=float(search.get("repetition_penalty", 1.0)), seed=search.get("random_seed"),
            session=session, adapter=adapter)
        self.batcher.submit(sequence)
        finished.wait()
        if outcome.get("error") is not None:
            raise outcome["error"]
        reason = "cancelled" if state.cancelled else outcome["reason"]
        count = state.count
        self._count(metrics.tokens, count)
        self._count(metrics.finished[reason], 1)
        self._answered(metrics, reason, count, state.text)
        if sequence.cached:
            self._count(metrics.cached_tokens, sequence.cached)
        if reason == "cancelled":
            outbox.final()
            return
        final = state.text[state.sent:] if stream else state.text
        outbox.final(self._response(final, reason, count, len(ids), sequence.cached))

    def _answered(self, metrics: Any, reason: str, tokens: int, text: str) -> None:
        """A finished answer's length, and its label for a closed-set model answering without an adapter (an
        adapter may be tuned to another task's labels); a cancelled answer has neither to speak of."""
        if reason in ("stop", "length"):
            self._count(metrics.answer_tokens, tokens, observe=True)
            if tokens == 0:
                self._count(metrics.empty_answers, 1)
            if metrics is self:
                self._count(self.by_length[length_bin(tokens, self.length_edges)], 1)
                if self.by_label:
                    self._count(self.by_label[label_of(text, self.answer_labels)], 1)

    def _count(self, metric: Any, value: float, observe: bool = False) -> None:
        """Metric updates are calls into the server: made by the sender thread, never in a stream's way."""
        self.outgoing.submit(self._update, metric, value, observe)

    def _update(self, metric: Any, value: float, observe: bool) -> None:
        with self.ipc:
            if observe:
                metric.observe(value)
            else:
                metric.increment(value)

    def _cancelled(self, request: Any) -> bool:
        with self.ipc:
            return bool(request.is_cancelled())

    def _send(self, sender: Any, response: Any = None, flags: int = 0) -> None:
        with self.ipc:
            if response is None:
                sender.send(flags=flags)
            else:
                sender.send(response, flags=flags)

    @staticmethod
    def _response(piece: str, reason: str | None = None, count: int | None = None, prompt: int = 0,
                  cached: int = 0) -> Any:
        tensors = [pb_utils.Tensor("text_output", np.array([piece.encode("utf-8")], dtype=np.object_))]
        if reason is not None:
            tensors.append(pb_utils.Tensor("finish_reason", np.array([reason.encode()], dtype=np.object_)))
            tensors.append(pb_utils.Tensor("completion_tokens", np.array([count or 0], dtype=np.int32)))
            tensors.append(pb_utils.Tensor("prompt_tokens", np.array([prompt], dtype=np.int32)))
            tensors.append(pb_utils.Tensor("cached_prompt_tokens", np.array([cached], dtype=np.int32)))
            tensors.append(pb_utils.Tensor("num_input_tokens", np.array([prompt], dtype=np.uint32)))
            tensors.append(pb_utils.Tensor("num_output_tokens", np.array([count or 0], dtype=np.uint32)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            arrived = time.perf_counter()
            sender = request.get_response_sender()
            with self.lock:
                full = self.in_flight >= self.max_concurrency + self.max_queue
                if not full:
                    self.in_flight += 1
                    self._gauges()
            if full:
                self._count(self.refused["queue_full"], 1)
                self._send(sender, pb_utils.InferenceResponse(error=_exhausted(
                    f"resource exhausted: {self.max_concurrency} requests are generating and {self.max_queue} "
                    f"wait (max_concurrency {self.max_concurrency}, max_queue {self.max_queue}); retry later")),
                    FINAL)
                continue
            self.executor.submit(self._generate, request, sender, arrived)
        return None

    def finalize(self) -> None:
        self.stopping.set()
        if self.batcher is not None:
            self.batcher.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.outgoing.shutdown(wait=True)
