"""The generation engine: every running request's next token comes from one forward pass, whatever the request is
(plain, constrained by a grammar, for a LoRA adapter, a conversation's next turn), and any prompt that starts with
tokens computed recently skips them.

Its parts, one module each: the scheduler (scheduler.py: who takes a row), the key/value buffers (kv_cache.py),
the model runner (runner.py: the decoder graph, the adapter bank), the prefix cache (prefix_cache.py), token
choice (sampling.py) and grammars (constraints.py). This module is the loop that joins them:

- A request takes a row as one frees. Its prompt's longest cached prefix is copied into the row, the rest is
  prefilled alone (between two decode steps), and the prompt's keys and values go into the prefix cache, so the
  next request sharing that start skips it, even one arriving in the same step.
- Each decode step runs every row; each row's token is chosen by its own chooser (a constrained row's grammar
  masks its logits first); a row leaves when it ends, is cut at its length or its caller stops it, and the last
  row moves into its place (rows stay contiguous).
- A request with a session id is a conversation: when its turn ends, the chat template's turn end is run through
  its row and the whole conversation is cached, so the next turn prefills only its question. Sessions are the
  prefix cache, not a store of their own.

No Triton import: the served model (triton/generator.py) wires it to requests; tests and the exporter's gate run
it in process.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from .adapters import LoraWeights
from .constraints import GrammarState
from .kv_cache import KVCache
from .params import SamplingParams
from .prefix_cache import PrefixCache
from .runner import DecoderConfig, DecoderRunner
from .sampling import TokenChooser
from .scheduler import Scheduler

FINISHED_BY_STOP, FINISHED_BY_LENGTH, CANCELLED = "stop", "length", "cancelled"
BASE = ""  # the prefix cache's namespace of the base weights (an adapter's is its publication's digest)


class Request:
    """One request in the batch. `on_token(token)` returns False to stop it (a stop string, a caller gone);
    `on_finish(reason, error)` is called once, from the engine's thread. `params.max_tokens` None: up to the
    context window."""

    def __init__(self, prompt: list[int], params: SamplingParams, on_token: Callable[[int], bool],
                 on_finish: Callable[[str, BaseException | None], None],
                 grammar: GrammarState | None = None) -> None:
        self.prompt = list(prompt)
        self.params = params
        self.max_new_tokens = params.max_tokens if params.max_tokens is not None else 1 << 30
        self.session = params.session_id
        self.adapter = params.adapter  # a loaded LoRA adapter's name, or None for the base model
        self.grammar = grammar
        self.chooser: TokenChooser | None = None  # made at admission (it needs the model's end markers)
        self.namespace = BASE  # the adapter publication its cache is computed with
        self.cached = 0  # prompt tokens whose keys and values came from the prefix cache
        self.output: list[int] = []  # generated tokens, in order
        self.on_token, self.on_finish = on_token, on_finish
        self.generated = 0
        self.length = 0  # tokens in the row's cache
        self.last = -1  # the token the next step feeds
        self.slot = -1


class Engine:
    """The decoder of an onnxruntime-genai model folder, serving up to `slots` requests in one batch, with a
    prefix cache of `prefix_cache_bytes` (0: off)."""

    def __init__(self, directory: str, slots: int, threads: int = 0, capacity: int = 256,
                 max_capacity: int | None = None, on_step: Callable[[int], None] | None = None,
                 prefix_cache_bytes: int = 1 << 30) -> None:
        self.config = DecoderConfig.read(directory)
        self.eos = set(self.config.eos)
        self.max_capacity = min(max_capacity or self.config.context, self.config.context)
        self.slots = slots
        self.kv = KVCache(slots, self.config.layers, self.config.kv_heads, self.config.head_size,
                          min(capacity, self.max_capacity), self.max_capacity)
        self.runner = DecoderRunner(self.config, self.kv, threads)
        self.prefix = PrefixCache(prefix_cache_bytes, self.kv.bytes_per_token)
        self.scheduler: Scheduler[Request] = Scheduler(slots)
        self.running: list[Request] = []
        self.condition = threading.Condition()
        self.closed = False
        self.steps = 0
        self.batch_sizes: deque[int] = deque(maxlen=1024)
        self.on_step = on_step  # called with each decode step's batch size (the served model's metric)
        self.turn_end: list[int] = []  # what the chat template adds after an answer, before the next user turn
        self.adapter_names: dict[str, LoraWeights] = {}  # loaded: the published ones and any still in use
        self.wanted: dict[str, LoraWeights] = {}  # the published ones (set_adapters' last call, applied)
        self._pending: tuple[dict[str, LoraWeights], Any] | None = None
        self._adapting = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self.thread.start()

    @property
    def capacity(self) -> int:
        return self.kv.capacity

    # -- the public side ----------------------------------------------------------------------------------

    def submit(self, request: Request) -> None:
        """Queue `request`; it takes a row at the next step with one free."""
        room = max(0, self.max_capacity - len(request.prompt))
        request.max_new_tokens = min(request.max_new_tokens, room)
        with self.condition:
            if self.closed:
                raise RuntimeError("the engine is closed")
            self.scheduler.add(request)
            self.condition.notify()

    def set_adapters(self, adapters: dict[str, LoraWeights]) -> None:
        """Serve these adapters from the next step on (an adapter still decoding for a request is kept until it
        finishes). The first call builds the bank graph here, in the caller's thread: the batch keeps decoding."""
        with self._adapting:
            graph = None
            if adapters and self.runner.lora_shapes is None and (self._pending is None or self._pending[1] is None):
                graph = self.runner.bank_graph()
            with self.condition:
                if self._pending is not None and graph is None:  # keep a bank graph not applied yet
                    graph = self._pending[1]
                self._pending = (dict(adapters), graph)
                self.condition.notify()

    def adapters(self) -> set[str]:
        """The adapters requests may name now (set_adapters' last call, applied or about to be)."""
        with self.condition:
            if self._pending is not None:
                return set(self._pending[0])
            return set(self.wanted)

    def cache_prefix(self, ids: list[int]) -> None:
        """Prefill `ids` once and keep them in the prefix cache for good (the chat template's fixed opening, which
        every conversation starts with). Call before the first request."""
        if len(ids) < 2 or len(ids) >= self.kv.capacity or not self.prefix.enabled:
            return
        with self.condition:  # the loop is idle before the first request; row 0 is free
            prompt = np.asarray([ids], dtype=np.int64)
            self.runner.run(prompt, np.ones_like(prompt), 0, 1, [None])
            self.prefix.insert(BASE, ids, lambda start, end: self.kv.read(0, start, end), pinned=True)

    def set_turn_end(self, ids: list[int]) -> None:
        """The tokens a chat template always puts after an answer (its end marker and the next user turn's header):
        a session's finished turn runs them through its row before it is cached, so the follow-up prefills only
        its own question, as the first turn does."""
        self.turn_end = list(ids)

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify()
        self.thread.join(timeout=30)

    # -- the loop -----------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self.condition:
                removed = self.adapter_names.keys() - self.wanted.keys()
                if removed and self._pending is None and not self._in_use(removed):
                    self._apply_adapters(self.wanted, None)  # a removed adapter's last request has finished
                while not self.closed and not self.scheduler and not self.running and self._pending is None:
                    self.condition.wait()
                if self.closed:
                    break
                pending, self._pending = self._pending, None
                if pending is not None:
                    self._apply_adapters(*pending)
                admitted = self.scheduler.admit(len(self.running))
            for request in admitted:
                self._admit(request)
            if self.running:
                self._step()
        with self.condition:
            left = [*self.running, *self.scheduler.waiting]
        for request in left:
            self._finish(request, CANCELLED, RuntimeError("the generator is shutting down"))

    def _in_use(self, names: set[str]) -> bool:
        return any(r.adapter in names for r in (*self.running, *self.scheduler.waiting))

    def _apply_adapters(self, adapters: dict[str, LoraWeights], graph: Any) -> None:
        in_use = {r.adapter for r in (*self.running, *self.scheduler.waiting) if r.adapter is not None}
        kept = {name: self.adapter_names[name] for name in in_use
                if name not in adapters and name in self.adapter_names}
        self.wanted = dict(adapters)
        self.adapter_names = {**adapters, **kept}
        self.runner.use_bank(self.adapter_names, graph)
        live = {self._namespace(name) for name in self.adapter_names} | {BASE}
        for namespace in self.prefix.namespaces():
            if namespace.split("|salt:")[0] not in live:
                self.prefix.clear(namespace)  # an adapter unpublished or published again: its caches are wrong

    def _namespace(self, adapter: str | None, salt: str | None = None) -> str:
        """Whose keys and values a request may reuse: those computed with the same weights (the base model's, or
        one adapter publication's) and the same cache salt."""
        name = BASE
        if adapter is not None:
            weights = self.adapter_names[adapter]
            name = "adapter:" + (weights.digest or weights.name)
        return name if salt is None else f"{name}|salt:{salt}"

    def _admit(self, request: Request) -> None:
        try:
            if request.adapter is not None and (self.runner.bank is None
                                                or request.adapter not in self.adapter_names):
                raise ValueError(f"adapter {request.adapter!r} is not loaded")
            request.namespace = self._namespace(request.adapter, request.params.cache_salt)
            request.chooser = TokenChooser(request.params, request.prompt, self.eos, request.grammar)
            if request.max_new_tokens <= 0:
                self._finish(request, FINISHED_BY_LENGTH, None)
                return
            self.kv.ensure(len(request.prompt) + request.max_new_tokens)
            request.slot = len(self.running)
            self.running.append(request)
            cached = self._reuse(request)
            ids = np.asarray([request.prompt[cached:]], dtype=np.int64)
            mask = np.ones((1, len(request.prompt)), dtype=np.int64)
            logits = self.runner.run(ids, mask, request.slot, request.slot + 1, [request.adapter])
            request.length = len(request.prompt)
            request.cached = cached
            slot = request.slot
            # Cached now, so the next request sharing this start skips it (copies: the logits stay valid).
            self.prefix.insert(request.namespace, request.prompt, lambda start, end: self.kv.read(slot, start, end))
        except Exception as error:  # a request the graph cannot take: it alone fails
            if request in self.running:
                self._remove(request, keep=False)
            self._finish(request, "error", error)
            return
        self._deliver(request, logits[0, -1])

    def _reuse(self, request: Request) -> int:
        """Copy the longest cached prefix of the prompt into the request's row (at most all but its last token,
        whose logits the prefill is for); how many tokens that was. Only caches computed with the request's own
        adapter (or none) are looked at."""
        blocks = self.prefix.match(request.namespace, request.prompt, len(request.prompt) - 1)
        at = 0
        for block, count in blocks:
            assert block.kv is not None
            self.kv.write(request.slot, at, block.kv, count)
            at += count
        return at

    def _step(self) -> None:
        rows = len(self.running)
        total = max(r.length for r in self.running) + 1
        mask = np.zeros((rows, total), dtype=np.int64)
        ids = np.empty((rows, 1), dtype=np.int64)
        for row, request in enumerate(self.running):
            mask[row, :request.length + 1] = 1
            ids[row, 0] = request.last
        try:
            logits = self.runner.run(ids, mask, 0, rows, [r.adapter for r in self.running])
        except Exception as error:  # the whole step failed: every running request gets the error, none hangs
            for request in list(self.running):
                self._remove(request, keep=False)
                self._finish(request, "error", error)
            return
        self.steps += 1
        self.batch_sizes.append(rows)
        if self.on_step is not None:
            with contextlib.suppress(Exception):
                self.on_step(rows)
        stepped = list(self.running)
        if self.turn_end and any(r.session is not None for r in stepped):
            # A session's turn that ends runs its closing tokens through the graph (_feed) before the other rows
            # are delivered, and ONNX Runtime's outputs are views of memory a later run may reuse.
            logits = logits.copy()
        for request in stepped:  # every cache grew by one: before any row moves into a freed slot
            request.length += 1
        for row, request in enumerate(stepped):
            self._deliver(request, logits[row, -1])

    def _deliver(self, request: Request, logits: np.ndarray[Any, Any]) -> None:
        chooser = request.chooser
        assert chooser is not None
        try:
            token = chooser.choose(logits)
            chooser.accept(token)
        except Exception as error:  # a grammar no token can continue: this request's error alone
            self._remove(request, keep=False)
            self._finish(request, "error", error)
            return
        if token in self.eos and request.generated >= request.params.min_tokens:
            self._remove(request, closing=self._turn_closing(request, token))
            self._finish(request, FINISHED_BY_STOP, None)
            return
        request.generated += 1
        request.last = token
        request.output.append(token)
        try:
            going = request.on_token(token)
        except Exception as error:
            self._remove(request, keep=False)
            self._finish(request, "error", error)
            return
        if not going:
            self._remove(request)
            self._finish(request, FINISHED_BY_STOP, None)
        elif request.generated >= request.max_new_tokens or request.length + 1 >= self.kv.capacity:
            self._remove(request, closing=self._turn_closing(request, None))
            self._finish(request, FINISHED_BY_LENGTH, None)

    @staticmethod
    def _finish(request: Request, reason: str, error: BaseException | None) -> None:
        with contextlib.suppress(Exception):  # a callback's failure must not stop the batch
            request.on_finish(reason, error)

    # -- rows -----------------------------------------------------------------------------------------------

    def _remove(self, request: Request, keep: bool = True, closing: list[int] | tuple[()] = ()) -> None:
        """Free the request's row: the last running row moves into it, so running rows stay at the front and a
        step's views are one contiguous block. A conversation's turn is cached first, after `closing`
        (_turn_closing) is run through it."""
        slot = request.slot
        if keep and request.session is not None and request.length > 0 and self.prefix.enabled:
            n = request.length  # the prompt and every generated token but the last (never fed)
            ids = (request.prompt + request.output)[:n]
            if closing and self._feed(request, list(closing)):
                ids = ids + list(closing)
            self.prefix.insert(request.namespace, ids, lambda start, end: self.kv.read(slot, start, end))
        last = self.running[-1]
        if last is not request:
            self.kv.move(last.slot, slot, last.length)
            last.slot = slot
            self.running[slot] = last
        self.running.pop()
        request.slot = -1

    def _turn_closing(self, request: Request, eos: int | None) -> list[int]:
        """The tokens a session's next prompt holds right after this turn's cache: those never fed (a cut answer's
        last token) and the template's turn end (`set_turn_end`). `eos`: the end marker the answer stopped at;
        None for an answer cut at its length."""
        if not self.turn_end or request.session is None or not self.prefix.enabled:
            return []
        if eos is not None:
            return list(self.turn_end) if self.turn_end[0] == eos else []
        return [request.output[-1], *self.turn_end] if request.output else []

    def _feed(self, request: Request, tokens: list[int]) -> bool:
        """Run `tokens` through the finished row (one small prefill, for sessions only); False where the row has
        no room or the run fails (the next turn then prefills them)."""
        if request.length + len(tokens) >= self.kv.capacity:
            return False
        ids = np.asarray([tokens], dtype=np.int64)
        mask = np.ones((1, request.length + len(tokens)), dtype=np.int64)
        try:
            self.runner.run(ids, mask, request.slot, request.slot + 1, [request.adapter])
        except Exception:  # the answer is already whole; only the next turn's reuse is shorter
            return False
        request.length += len(tokens)
        return True
