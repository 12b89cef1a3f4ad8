"""Triton Python model: text generation by the serving engine (tuneship_serving/, copied beside this file), streamed
one piece per response. It only translates: a request's tensors into a prompt and SamplingParams, the engine's
tokens into responses, and what happened into metrics.

Installed as `<name>/<version>/model.py` next to the onnxruntime-genai model folder (`model.onnx`,
`genai_config.json`, `tokenizer.json`, `chat_template.jinja`), with `model_transaction_policy { decoupled: true }`.
Needs onnxruntime, tokenizers, jinja2, llguidance and numpy<2 in the Python backend's environment.

Inputs follow Triton's vLLM and TensorRT-LLM backends, so Triton's `/generate` and `/generate_stream` endpoints
and existing LLM tools work unchanged: `text_input` (or `messages`, a JSON list of chat messages, formatted with
the model's own chat template), `stream`, `sampling_parameters` (a JSON object, as the vLLM backend takes it),
and the sampling inputs `max_tokens`, `min_tokens`, `temperature`, `top_p`, `top_k`, `repetition_penalty`,
`random_seed`, `stop`; request parameters (the generate endpoint's "parameters") are read too. A request may
constrain its answer with one of `guided_choice`, `guided_regex` or `guided_json`, name a `session_id` (a
conversation: its turn end is cached with it) and an `adapter` (a LoRA adapter in the model's `adapters/` folder).

Output: `text_output`, one piece per response when streaming (the last carries `finish_reason`,
`completion_tokens`, `prompt_tokens` and `cached_prompt_tokens`, the prompt tokens served from the prefix cache),
the whole text in one response otherwise. A cancelled request (the caller went away) stops generating.
"""

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tuneship_serving.adapters import AdapterWatcher
from tuneship_serving.answers import LENGTH_EDGES, REFERENCE_FILE, label_of, length_bin
from tuneship_serving.chat import ROLES, ChatFormat
from tuneship_serving.constraints import ConstraintNotFollowed, Grammars
from tuneship_serving.engine import Engine, Request
from tuneship_serving.params import ALIASES, CONSTRAINTS, InvalidParams, SamplingParams
from tuneship_serving.streaming import AnswerText
from tuneship_serving.triton.metrics import GeneratorMetrics

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
OPTION_NAMES = ("max_tokens", "min_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "random_seed",
                "stop", "stream", *CONSTRAINTS, "session_id", "adapter", "raw", "exclude_input_in_output",
                "tuneship_probe", "stream_interval_ms")


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


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object")
    return parsed


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _answer_labels(directory: str) -> list[str]:
    """The closed set of answers the model was tuned on (labels.txt, written at export), or none."""
    try:
        with open(os.path.join(directory, "labels.txt"), encoding="utf-8") as handle:
            return [line.strip().lower() for line in handle if line.strip()]
    except OSError:
        return []


class _Outbox:
    """One stream's responses on their way out, in order, the final one last. Pieces go from the engine's thread
    between two steps (a sender thread beside ONNX Runtime's would take a core from its two); the final response
    and metric updates go through the model's one sender thread."""

    def __init__(self, model: "TritonPythonModel", sender: Any) -> None:
        self.model, self.sender = model, sender
        self.failed = False

    def piece(self, text: str) -> None:
        self._send(self.model._response(text))

    def final(self, response: Any = None) -> None:
        self.model.outgoing.submit(self._send, response, FINAL)

    def _send(self, response: Any = None, flags: int = 0) -> None:
        if self.failed:
            return
        try:
            self.model._send(self.sender, response, flags)
        except Exception:  # the caller is gone (or the server refused): the engine stops it at its next token
            self.failed = True


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.default_max_tokens = int(parameters.get("default_max_tokens", "256"))
        self.max_tokens_limit = int(parameters.get("max_tokens_limit", "2048"))
        self.max_prompt_tokens = int(parameters.get("max_prompt_tokens", "4096"))
        self.max_input_bytes = int(parameters.get("max_input_bytes", str(256 * 1024)))
        # Pieces of a stream leave at most this often (the first at once): each is a round trip to the server
        # between two decode steps.
        self.stream_interval_s = int(parameters.get("stream_interval_ms", "0")) / 1000
        directory = os.path.join(args["model_repository"], args["model_version"])
        self.chat = ChatFormat(directory)
        self.max_concurrency = int(parameters.get("max_concurrency", "8"))
        # Requests beyond the running ones wait in arrival order (the executor's queue), up to max_queue; more
        # are refused at once, so a burst gets a clear answer instead of waiting without bound.
        self.max_queue = int(parameters.get("max_queue", str(4 * self.max_concurrency)))
        self.executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="generate")
        self.outgoing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="send")
        self.running = 0
        self.in_flight = 0
        self.lock = threading.Lock()
        # One call at a time into the stub's IPC with the server (responses, cancellation checks, metrics):
        # concurrent calls from several threads crash Triton 2.51's Python backend
        # (boost::interprocess::lock_exception in the server process).
        self.ipc = threading.Lock()
        # A version published before the prefix cache bounded its sessions' memory by session_cache_mb.
        cache_mb = float(parameters.get("prefix_cache_mb", parameters.get("session_cache_mb", "1024")))
        self.engine = Engine(directory, slots=self.max_concurrency,
                             threads=int(parameters.get("intra_op_threads", "0")),
                             max_capacity=min(self.max_prompt_tokens + self.max_tokens_limit,
                                              _context_length(directory)),
                             on_step=self._stepped, prefix_cache_bytes=int(cache_mb * 2**20))
        self.context_length = self.engine.config.context
        self.grammars = Grammars(self.chat.tokenizer_json, _vocab_size(self.engine, self.chat), sorted(self.engine.eos))
        self.engine.cache_prefix(self.chat.opening())
        self.engine.set_turn_end(self.chat.turn_end(self.engine.eos))
        source = _read_json(os.path.join(directory, "tuneship_source.json")) or {}
        self.adapters = AdapterWatcher(args["model_repository"], str(source.get("weights", "")),
                                       self.engine.set_adapters, self._log,
                                       float(parameters.get("adapter_poll_s", "2")))
        self.answer_labels = _answer_labels(directory)
        reference = _read_json(os.path.join(directory, REFERENCE_FILE))
        self.reference = reference if isinstance(reference, dict) else None
        self.length_edges = [int(e) for e in (self.reference or {}).get("length_edges", LENGTH_EDGES)]
        self.evicted_counted = 0
        self.metrics = GeneratorMetrics({"model": args["model_name"], "version": args["model_version"]},
                                        self.answer_labels, self.length_edges, self.reference)

    def _log(self, message: str) -> None:
        logger = getattr(pb_utils, "Logger", None)
        if logger is not None:
            logger.log_warn(message)

    def _stepped(self, rows: int) -> None:
        """After each decode step (the engine's thread): the batch size, and the prefix cache now and then."""
        self._count(self.metrics.batch_size, rows, observe=True)
        if self.engine.steps % 64 == 0:
            cache = self.engine.prefix
            self.outgoing.submit(self._set, self.metrics.cache_bytes, cache.nbytes)
            if cache.evicted > self.evicted_counted:
                self._count(self.metrics.cache_evicted, cache.evicted - self.evicted_counted)
                self.evicted_counted = cache.evicted

    # -- one request --------------------------------------------------------------------------------------

    def _options(self, request: Any) -> dict[str, Any]:
        """Request parameters, then `sampling_parameters` JSON, then the named inputs (later wins)."""
        options: dict[str, Any] = {}
        raw_parameters = request.parameters()
        if raw_parameters:
            options.update({ALIASES.get(k, k): v for k, v in json.loads(raw_parameters).items()
                            if ALIASES.get(k, k) in OPTION_NAMES})
        sampling = _scalar(request, "sampling_parameters")
        if sampling:
            options.update({ALIASES.get(k, k): v for k, v in _json_object(sampling, "sampling_parameters").items()})
        for name in (*OPTION_NAMES, *ALIASES):
            value = _scalar(request, name)
            if value is not None:
                options[ALIASES.get(name, name)] = value
        if options.pop("exclude_input_in_output", True) is False:
            raise ValueError("exclude_input_in_output false (echo the prompt) is not supported: answers never "
                             "repeat their prompt")
        return options

    def _prompt(self, request: Any, params: SamplingParams) -> list[int]:
        """The prompt's tokens. A prompt holding the tokenizer's special tokens (Triton's OpenAI frontend sends
        chats already templated) or a request with `raw` true is read as it is; plain text becomes a user turn."""
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
                    isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content", ""), str)
                    for m in parsed):
                raise ValueError(f"messages must be a JSON list of {{role: {'|'.join(ROLES)}, content: text}}")
            return list(self.chat.chat_ids(parsed))
        if text is None or not str(text).strip():
            raise ValueError("text_input is empty (send a prompt, or chat messages in 'messages')")
        if len(str(text).encode("utf-8")) > self.max_input_bytes:
            raise ValueError(f"text_input: over this model's limit of {self.max_input_bytes} bytes")
        text = str(text)
        raw = params.raw or any(marker in text for marker in self.chat.markers)
        return list(self.chat.prompt_ids(text, raw=raw))

    def _generate(self, request: Any, sender: Any, arrived: float) -> None:
        started = time.perf_counter()
        outbox = _Outbox(self, sender)
        with self.lock:
            self.running += 1
            self._gauges()
        self._count(self.metrics.queue_time, started - arrived, observe=True)
        try:
            if started - arrived > 0.01 and self._cancelled(request):
                # Its caller gave up (or its deadline passed) while it waited: nothing to generate for.
                self._count(self.metrics.refused["expired"], 1)
                self._count(self.metrics.per_request.finished["cancelled"], 1)
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
        self.outgoing.submit(self._set, self.metrics.running, running)
        self.outgoing.submit(self._set, self.metrics.queued, queued)

    def _set(self, gauge: Any, value: float) -> None:
        with self.ipc:
            gauge.set(value)

    def _answer(self, request: Any, outbox: _Outbox, started: float) -> None:
        try:
            params = SamplingParams.from_wire(self._options(request))
            params = params.with_limits(self.default_max_tokens, self.max_tokens_limit)
            ids = self._prompt(request, params)
            limit = min(self.max_prompt_tokens, self.context_length - 1)
            if len(ids) > limit:
                raise ValueError(f"the prompt has {len(ids)} tokens, over this model's limit of {limit} "
                                 f"(context window {self.context_length})")
            self._check_adapter(params.adapter)
            grammar = self.grammars.compile(params.constraint) if params.constraint is not None else None
        except (ValueError, TypeError) as error:  # InvalidParams is a ValueError naming its field
            self._count(self.metrics.per_request.finished["error"], 1)
            outbox.final(pb_utils.InferenceResponse(error=_invalid(str(error))))
            return
        metrics = self.metrics.of(params.adapter, params.extra.get("tuneship_probe") is True)
        constraint = params.constraint.kind if params.constraint is not None else None
        if constraint is not None:
            self._count(self.metrics.constrained[constraint], 1)
        try:
            self._run(request, outbox, ids, params, grammar, started, metrics)
        except ConstraintNotFollowed as error:  # the caller's error, named (only constrained requests raise it)
            self._count(metrics.finished["error"], 1)
            if constraint is not None:
                self._count(self.metrics.constraint_failures[constraint], 1)
            outbox.final(pb_utils.InferenceResponse(error=_invalid(str(error))))
        except Exception as error:  # the engine failed: the caller gets an error, never a hang
            self._count(metrics.finished["error"], 1)
            outbox.final(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"generation failed: {error}")))

    def _check_adapter(self, name: str | None) -> None:
        if name is None:
            return
        if name not in self.engine.adapters():
            self.adapters.scan()
            if name not in self.engine.adapters():
                known = ", ".join(sorted(self.engine.adapters())) or "none"
                raise InvalidParams("adapter", f"adapter {name!r} is not published for this model (published: "
                                               f"{known})")

    def _interval(self, params: SamplingParams) -> float:
        """Seconds between a stream's pieces: the model's setting, or the request's (0: every token, for a caller
        that measures inter-token latency)."""
        if params.stream_interval_ms is None:
            return float(self.stream_interval_s)
        return float(params.stream_interval_ms) / 1000

    def _run(self, request: Any, outbox: _Outbox, ids: list[int], params: SamplingParams, grammar: Any,
             started: float, metrics: Any) -> None:
        """The request as one row of the engine's batch; this thread waits until it finishes (so the slots and the
        queue count it), the engine's thread decodes and streams its pieces."""
        self._count(metrics.prompt_tokens, len(ids))
        stream = self.chat.decoder()
        answer = AnswerText(lambda token: self.chat.decode_step(stream, token), params.stop, params.stream,
                            self._interval(params))
        finished = threading.Event()
        outcome: dict[str, Any] = {}
        state = {"cancelled": False, "checked": time.perf_counter()}

        def check() -> None:
            if outbox.failed or self._cancelled(request):
                state["cancelled"] = True

        def on_token(token: int) -> bool:
            now = time.perf_counter()
            if state["cancelled"]:
                return False
            if answer.count == 0:
                self._count(metrics.ttft, now - started, observe=True)
            elif now - state["checked"] > 0.05:
                # A round trip to the server every 50 ms, made by the sender thread: the engine's thread never
                # waits for it (eight streams asking in turn held every step behind the server's lock).
                state["checked"] = now
                self.outgoing.submit(check)
            piece, going = answer.add(token, now)
            if piece:
                outbox.piece(piece)
            return bool(going)

        def on_finish(reason: str, error: BaseException | None) -> None:
            outcome.update(reason=reason, error=error)
            finished.set()

        row = Request(ids, params, on_token, on_finish, grammar=grammar)
        self.engine.submit(row)
        finished.wait()
        if outcome.get("error") is not None:
            raise outcome["error"]
        reason = "cancelled" if state["cancelled"] else outcome["reason"]
        count = answer.count
        self._count(metrics.tokens, count)
        self._count(metrics.finished[reason], 1)
        self._answered(metrics, reason, count, answer.text)
        if row.cached:
            self._count(metrics.cached_tokens, row.cached)
        if reason == "cancelled":
            outbox.final()
            return
        outbox.final(self._response(answer.rest(), reason, count, len(ids), row.cached))

    def _answered(self, metrics: Any, reason: str, tokens: int, text: str) -> None:
        """A finished answer's length, and its label for a closed-set model answering without an adapter (an
        adapter may be tuned to another task's labels); a cancelled answer has neither to speak of."""
        if reason in ("stop", "length"):
            self._count(metrics.answer_tokens, tokens, observe=True)
            if tokens == 0:
                self._count(metrics.empty_answers, 1)
            if metrics is self.metrics.per_request:
                self._count(self.metrics.by_length[length_bin(tokens, self.length_edges)], 1)
                if self.metrics.by_label:
                    self._count(self.metrics.by_label[label_of(text, self.answer_labels)], 1)

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
                self._count(self.metrics.refused["queue_full"], 1)
                self._send(sender, pb_utils.InferenceResponse(error=_exhausted(
                    f"resource exhausted: {self.max_concurrency} requests are generating and {self.max_queue} "
                    f"wait (max_concurrency {self.max_concurrency}, max_queue {self.max_queue}); retry later")),
                    FINAL)
                continue
            self.executor.submit(self._generate, request, sender, arrived)
        return None

    def finalize(self) -> None:
        self.adapters.close()
        self.engine.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.outgoing.shutdown(wait=True)


def _context_length(directory: str) -> int:
    config = _read_json(os.path.join(directory, "genai_config.json")) or {}
    return int(config.get("model", {}).get("context_length", 1 << 30))


def _vocab_size(engine: Engine, chat: ChatFormat) -> int:
    """The logits' width: genai_config's vocab_size, else the tokenizer's."""
    return int(engine.config.vocab_size or chat.tokenizer.get_vocab_size(with_added_tokens=True))
