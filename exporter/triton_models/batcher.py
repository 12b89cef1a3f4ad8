"""Continuous batching for the served generator: every running request's next token comes from one forward pass.

onnxruntime-genai 0.18's `og.Engine` batches only statically on a CPU (a request that arrives while a batch runs
waits for the whole batch to finish: `benchmarks/generation_batching.py`), and its continuous batching needs paged
attention, which it builds for CUDA only. Batching decode steps is what makes many users cheap on a CPU too (the
weights are read once per step for every sequence: one step of 8 sequences costs about 3x one of 1), so this module
runs the onnxruntime-genai model's decoder graph itself, with ONNX Runtime:

- Each request holds a slot: a row of one key/value buffer per layer ([slots, kv_heads, capacity, head_size]).
  GroupQueryAttention reads each row's own length from the attention mask and writes the new token's keys and
  values in place (the past and present buffers are the same memory), so nothing is copied per step.
- A new request's prompt runs alone (prefill) into its slot, between two decode steps; the decode step then takes
  every running request, so a request starts at the next step and leaves the batch when it finishes or its caller
  cancels. Running rows are kept at the front of the buffers; a finished row's slot takes the last one's cache.
- Tokens are chosen per request (greedy, or temperature / top-k / top-p sampling with its own seeded generator,
  repetition penalty, a minimum length), and handed to the request's callback, which decodes, streams and may stop.
- A request with a session id leaves its cache behind when it finishes (`SessionCache`: bounded in sessions,
  bytes and idle lifetime, least recently used evicted first). The session's next turn starts from the longest
  prefix its prompt shares with those tokens: that part is copied into its slot, and only the rest is prefilled,
  so a follow-up's first token does not wait for the whole conversation again. The chat template's fixed opening
  (its system prompt), computed once, is shared the same way by every request.
- A request may name a LoRA adapter (`set_adapters`, tuneship_lora.py): once one is loaded the decoder is the
  graph with the adapter bank, and each row's mask picks its own adapter (or none), so requests for different
  adapters and for the base model are decoded in the same step. Caches are kept per adapter publication.

No Triton import: the generator model (generator.py) wires it to requests, and tests run it in process.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isfile(os.path.join(_HERE, "tuneship_lora.py")):  # the served copy, beside this file
    sys.path.insert(0, _HERE)
    from tuneship_lora import MASK_INPUT, Bank, LoraWeights, patch_decoder
else:  # in the source tree (the exporter's gate, the tests)
    from tuneship.exporter.triton_models.lora import MASK_INPUT, Bank, LoraWeights, patch_decoder

FINISHED_BY_STOP, FINISHED_BY_LENGTH, CANCELLED = "stop", "length", "cancelled"


class Sequence:
    """One request in the batch. `on_token(token)` returns False to stop it (a stop string, a caller gone);
    `on_finish(reason, error)` is called once, from the batcher's thread."""

    def __init__(self, prompt: list[int], max_new_tokens: int, on_token: Callable[[int], bool],
                 on_finish: Callable[[str, BaseException | None], None], *, min_new_tokens: int = 0,
                 temperature: float = 0.0, top_k: int = 50, top_p: float = 1.0, repetition_penalty: float = 1.0,
                 seed: int | None = None, session: str | None = None, adapter: str | None = None) -> None:
        self.prompt = list(prompt)
        self.session = session
        self.adapter = adapter  # a loaded LoRA adapter's name, or None for the base model
        self.cache_key: str | None = None  # the adapter publication its cache was computed with
        self.cached = 0  # prompt tokens whose keys and values came from a cache, not the prefill
        self.output: list[int] = []  # generated tokens, in order
        self.max_new_tokens, self.min_new_tokens = max_new_tokens, min_new_tokens
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.repetition_penalty = repetition_penalty
        self.rng = np.random.default_rng(seed)
        self.on_token, self.on_finish = on_token, on_finish
        self.seen = set(self.prompt)
        self.generated = 0
        self.length = 0  # tokens in the cache
        self.last = -1  # the token the next step feeds
        self.slot = -1

    def choose(self, logits: np.ndarray[Any, Any], eos: set[int]) -> int:
        if self.temperature <= 0 and self.repetition_penalty == 1.0 and self.generated >= self.min_new_tokens:
            return int(np.argmax(logits))  # plain greedy: no copy of the 49k scores to adjust
        scores = logits.astype(np.float32, copy=True)
        if self.repetition_penalty != 1.0 and self.seen:
            index = np.fromiter(self.seen, dtype=np.int64)
            picked = scores[index]
            scores[index] = np.where(picked > 0, picked / self.repetition_penalty, picked * self.repetition_penalty)
        if self.generated < self.min_new_tokens:
            scores[list(eos)] = -np.inf
        if self.temperature <= 0:
            return int(np.argmax(scores))
        scores /= self.temperature
        if 0 < self.top_k < scores.size:
            cut = np.partition(scores, -self.top_k)[-self.top_k]
            scores[scores < cut] = -np.inf
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        if self.top_p < 1.0:
            order = np.argsort(-probabilities)
            cumulative = np.cumsum(probabilities[order])
            keep = order[:int(np.searchsorted(cumulative, self.top_p)) + 1]
            mask = np.zeros_like(probabilities)
            mask[keep] = probabilities[keep]
            probabilities = mask / mask.sum()
        return int(self.rng.choice(probabilities.size, p=probabilities))


class Cached:
    """Keys and values of `ids` (per layer [kv_heads, len(ids), head_size]), kept between requests."""

    def __init__(self, ids: list[int], keys: list[np.ndarray[Any, Any]], values: list[np.ndarray[Any, Any]],
                 adapter: str | None = None) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.adapter = adapter  # the adapter publication (LoraWeights.digest) the keys and values come from
        self.keys, self.values = keys, values
        self.nbytes = sum(a.nbytes for a in (*keys, *values))
        self.used = time.monotonic()

    def shared(self, prompt: np.ndarray[Any, Any]) -> int:
        """How many leading tokens `prompt` shares with these (at most all but the prompt's last: the last one's
        logits are what the prefill is for)."""
        n = min(len(self.ids), len(prompt) - 1)
        if n <= 0:
            return 0
        different = np.flatnonzero(self.ids[:n] != prompt[:n])
        return int(different[0]) if different.size else n


class SessionCache:
    """Finished turns' caches by session id: at most `max_sessions`, `max_bytes` in all, each kept `ttl_s` after
    its last use; the least recently used goes first. Used from the batcher's thread only."""

    def __init__(self, max_sessions: int, max_bytes: int, ttl_s: float) -> None:
        self.max_sessions, self.max_bytes, self.ttl_s = max_sessions, max_bytes, ttl_s
        self.entries: OrderedDict[str, Cached] = OrderedDict()
        self.nbytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def take(self, session: str) -> Cached | None:
        """The session's cache, removed: the turn that reads it owns it until it finishes (a concurrent turn of
        the same session starts cold rather than share a cache being written)."""
        self._expire()
        entry = self.entries.pop(session, None)
        if entry is not None:
            self.nbytes -= entry.nbytes
        return entry

    def put(self, session: str, entry: Cached) -> None:
        old = self.entries.pop(session, None)
        if old is not None:
            self.nbytes -= old.nbytes
        if self.max_sessions <= 0 or entry.nbytes > self.max_bytes:
            return
        self.entries[session] = entry
        self.nbytes += entry.nbytes
        self._expire()
        while len(self.entries) > self.max_sessions or self.nbytes > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.nbytes -= dropped.nbytes
            self.evicted += 1

    def _expire(self) -> None:
        now = time.monotonic()
        while self.entries:
            session, oldest = next(iter(self.entries.items()))
            if now - oldest.used <= self.ttl_s:
                break
            del self.entries[session]
            self.nbytes -= oldest.nbytes
            self.evicted += 1


class ContinuousBatcher:
    """The decoder of an onnxruntime-genai model folder, serving up to `slots` sequences in one batch."""

    def __init__(self, directory: str, slots: int, threads: int = 0, capacity: int = 256,
                 max_capacity: int | None = None, on_step: Callable[[int], None] | None = None,
                 sessions: SessionCache | None = None) -> None:
        import onnxruntime as ort

        with open(os.path.join(directory, "genai_config.json"), encoding="utf-8") as handle:
            config = json.load(handle)["model"]
        decoder = config["decoder"]
        self.layers, self.kv_heads = int(decoder["num_hidden_layers"]), int(decoder["num_key_value_heads"])
        self.head_size = int(decoder["head_size"])
        eos = config.get("eos_token_id", [])
        self.eos = {int(t) for t in (eos if isinstance(eos, list) else [eos])}
        self.context = int(config.get("context_length", 1 << 30))
        self.max_capacity = min(max_capacity or self.context, self.context)
        names = decoder.get("inputs", {})
        self.past_key = names.get("past_key_names", "past_key_values.%d.key")
        self.past_value = names.get("past_value_names", "past_key_values.%d.value")
        outputs = decoder.get("outputs", {})
        self.present_key = outputs.get("present_key_names", "present.%d.key")
        self.present_value = outputs.get("present_value_names", "present.%d.value")
        self.ort = ort
        self.threads = threads or len(os.sched_getaffinity(0))
        self.model_path = os.path.join(directory, decoder["filename"])
        self.session = self._session(self.model_path)
        # LoRA adapters: the bank graph's shapes and folder once the first adapter came, the bank in use, and
        # what set_adapters handed over for the loop to apply between two steps.
        self.lora_shapes: dict[str, tuple[int, int]] | None = None
        self._lora_folder: Any = None
        self.bank: Bank | None = None
        self._pending: tuple[dict[str, LoraWeights], Any, Any, Any] | None = None
        self._adapting = threading.Lock()
        self.adapter_prefixes: dict[str, Cached] = {}
        self.prefix_ids: list[int] = []
        self.slots = slots
        self.capacity = 0
        self.keys: list[np.ndarray[Any, Any]] = []
        self.values: list[np.ndarray[Any, Any]] = []
        self._grow(min(capacity, self.max_capacity))
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self.condition = threading.Condition()
        self.closed = False
        self.steps = 0
        self.batch_sizes: deque[int] = deque(maxlen=1024)
        self.on_step = on_step  # called with each decode step's batch size (the served model's metric)
        self.sessions = sessions if sessions is not None else SessionCache(0, 0, 0.0)
        self.shared_prefix: Cached | None = None
        self.turn_end: list[int] = []  # what the chat template adds after an answer, before the next user turn
        self.thread = threading.Thread(target=self._loop, name="continuous-batcher", daemon=True)
        self.thread.start()

    # -- the public side ----------------------------------------------------------------------------------

    def submit(self, sequence: Sequence) -> None:
        """Queue `sequence`; it joins the batch at the next step with a free slot."""
        if len(sequence.prompt) + sequence.max_new_tokens > self.max_capacity:
            sequence.max_new_tokens = max(0, self.max_capacity - len(sequence.prompt))
        with self.condition:
            if self.closed:
                raise RuntimeError("the batcher is closed")
            self.waiting.append(sequence)
            self.condition.notify()

    def set_adapters(self, adapters: dict[str, LoraWeights]) -> None:
        """Serve these adapters from the next step on (an adapter still decoding for a request is kept until it
        finishes). The first call builds the bank graph here, in the caller's thread: the batch keeps decoding."""
        with self._adapting:
            session = shapes = folder = None
            if adapters and self.lora_shapes is None and (self._pending is None or self._pending[1] is None):
                graph, shapes, folder = patch_decoder(self.model_path)
                session = self._session(graph, folder)
            with self.condition:
                if self._pending is not None and session is None:  # keep a bank graph not applied yet
                    session, shapes, folder = self._pending[1:]
                self._pending = (dict(adapters), session, shapes, folder)
                self.condition.notify()

    def adapters(self) -> set[str]:
        """The adapters requests may name now (set_adapters' last call, applied or about to be)."""
        with self.condition:
            if self._pending is not None:
                return set(self._pending[0])
        bank = self.bank
        return set(bank.adapters) if bank is not None else set()

    def share_prefix(self, ids: list[int]) -> None:
        """Prefill `ids` once and keep their cache for every request that starts with them (the chat template's
        fixed opening). Call before the first request."""
        if len(ids) < 2 or len(ids) >= self.capacity:
            return
        self.prefix_ids = list(ids)
        prompt = np.asarray([ids], dtype=np.int64)
        self._run(prompt, np.ones_like(prompt), 0, 1, [None])
        n = len(ids)
        self.shared_prefix = Cached(ids, [k[0, :, :n].copy() for k in self.keys],
                                    [v[0, :, :n].copy() for v in self.values])

    def set_turn_end(self, ids: list[int]) -> None:
        """The tokens a chat template always puts after an answer (its end marker and the next user turn's header):
        a session's finished turn feeds them (_turn_closing) before its cache is kept, so the follow-up prefills
        only its own question, as the first turn does."""
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
                while not self.closed and not self.waiting and not self.running and self._pending is None:
                    self.condition.wait()
                if self.closed:
                    break
                pending, self._pending = self._pending, None
                in_use = {s.adapter for s in (*self.running, *self.waiting) if s.adapter is not None}
                if pending is not None:
                    self._apply_adapters(pending, in_use)
                admitted: list[Sequence] = []
                while self.waiting and len(self.running) + len(admitted) < self.slots:
                    admitted.append(self.waiting.popleft())
            for sequence in admitted:
                self._admit(sequence)
            if self.running:
                self._step()
        for sequence in [*self.running, *self.waiting]:
            self._finish(sequence, CANCELLED, RuntimeError("the generator is shutting down"))

    def _apply_adapters(self, pending: tuple[dict[str, LoraWeights], Any, Any, Any], in_use: set[str]) -> None:
        adapters, session, shapes, folder = pending
        if session is not None:
            self.session, self.lora_shapes, self._lora_folder = session, shapes, folder
            self._bindings.clear()
        if self.lora_shapes is None:
            return
        old = self.bank.adapters if self.bank is not None else {}
        kept = {name: old[name] for name in in_use if name not in adapters and name in old}
        self.bank = Bank({**adapters, **kept}, self.lora_shapes)
        self._bindings.clear()
        live = {w.digest for w in self.bank.adapters.values()}
        self.adapter_prefixes = {k: v for k, v in self.adapter_prefixes.items() if k in live}

    def _admit(self, sequence: Sequence) -> None:
        try:
            if sequence.adapter is not None:
                if self.bank is None or sequence.adapter not in self.bank.adapters:
                    raise ValueError(f"adapter {sequence.adapter!r} is not loaded")
                sequence.cache_key = self.bank.adapters[sequence.adapter].digest or sequence.adapter
            if sequence.max_new_tokens <= 0:
                self._finish(sequence, FINISHED_BY_LENGTH, None)
                return
            needed = len(sequence.prompt) + sequence.max_new_tokens
            if needed > self.capacity:
                self._grow(min(self.max_capacity, max(needed, 2 * self.capacity)))
            sequence.slot = len(self.running)
            self.running.append(sequence)
            prompt = np.asarray(sequence.prompt, dtype=np.int64)
            cached = self._reuse(sequence, prompt)
            ids = prompt[None, cached:]
            logits = self._run(ids, np.ones((1, len(prompt)), dtype=np.int64), sequence.slot, sequence.slot + 1,
                               [sequence.adapter])
            sequence.length = len(sequence.prompt)
            sequence.cached = cached
            self._keep_adapter_prefix(sequence)
        except Exception as error:  # a request the graph cannot take: it alone fails
            if sequence in self.running:
                self._remove(sequence, keep=False)
            self._finish(sequence, "error", error)
            return
        self._deliver(sequence, logits[0, -1])

    def _keep_adapter_prefix(self, sequence: Sequence) -> None:
        """An adapter's first request leaves the template's opening behind for the adapter's next ones (its keys
        and values are the adapter's own, not the base model's)."""
        key, n = sequence.cache_key, len(self.prefix_ids)
        if key is None or key in self.adapter_prefixes or not n or sequence.prompt[:n] != self.prefix_ids:
            return
        if len(sequence.prompt) <= n:
            return
        slot = sequence.slot
        self.adapter_prefixes[key] = Cached(self.prefix_ids, [k[slot, :, :n].copy() for k in self.keys],
                                            [v[slot, :, :n].copy() for v in self.values], adapter=key)

    def _reuse(self, sequence: Sequence, prompt: np.ndarray[Any, Any]) -> int:
        """Copy the longest cached prefix of `prompt` into the sequence's slot; how many tokens that was. Only
        caches computed with the sequence's own adapter (or none) are candidates."""
        key = sequence.cache_key
        prefix = self.shared_prefix if key is None else self.adapter_prefixes.get(key)
        candidates = [prefix] if prefix is not None else []
        if sequence.session is not None:
            own = self.sessions.take(sequence.session)
            if own is not None and own.adapter == key:
                candidates.append(own)
        best, length = None, 0
        for entry in candidates:
            shared = entry.shared(prompt)
            if shared > length:
                best, length = entry, shared
        if best is None:
            return 0
        best.used = time.monotonic()
        slot = sequence.slot
        for layer in range(self.layers):
            self.keys[layer][slot, :, :length] = best.keys[layer][:, :length]
            self.values[layer][slot, :, :length] = best.values[layer][:, :length]
        return length

    def _step(self) -> None:
        rows = len(self.running)
        total = max(s.length for s in self.running) + 1
        mask = np.zeros((rows, total), dtype=np.int64)
        ids = np.empty((rows, 1), dtype=np.int64)
        for row, sequence in enumerate(self.running):
            mask[row, :sequence.length + 1] = 1
            ids[row, 0] = sequence.last
        try:
            logits = self._run(ids, mask, 0, rows, [s.adapter for s in self.running])
        except Exception as error:  # the whole step failed: every running request gets the error, none hangs
            for sequence in list(self.running):
                self._remove(sequence, keep=False)
                self._finish(sequence, "error", error)
            return
        self.steps += 1
        self.batch_sizes.append(rows)
        if self.on_step is not None:
            with contextlib.suppress(Exception):
                self.on_step(rows)
        stepped = list(self.running)
        if self.turn_end and any(s.session is not None for s in stepped):
            # A session's turn that ends runs its closing tokens through the graph (_feed) before the other rows
            # are delivered, and ONNX Runtime's outputs are views of memory a later run may reuse.
            logits = logits.copy()
        for sequence in stepped:  # every cache grew by one: before any row moves into a freed slot
            sequence.length += 1
        for row, sequence in enumerate(stepped):
            self._deliver(sequence, logits[row, -1])

    def _deliver(self, sequence: Sequence, logits: np.ndarray[Any, Any]) -> None:
        token = sequence.choose(logits, self.eos)
        if token in self.eos and sequence.generated >= sequence.min_new_tokens:
            self._remove(sequence, closing=self._turn_closing(sequence, token))
            self._finish(sequence, FINISHED_BY_STOP, None)
            return
        sequence.generated += 1
        sequence.last = token
        sequence.output.append(token)
        sequence.seen.add(token)
        try:
            going = sequence.on_token(token)
        except Exception as error:
            self._remove(sequence, keep=False)
            self._finish(sequence, "error", error)
            return
        if not going:
            self._remove(sequence)
            self._finish(sequence, FINISHED_BY_STOP, None)
        elif sequence.generated >= sequence.max_new_tokens or sequence.length + 1 >= self.capacity:
            self._remove(sequence, closing=self._turn_closing(sequence, None))
            self._finish(sequence, FINISHED_BY_LENGTH, None)

    @staticmethod
    def _finish(sequence: Sequence, reason: str, error: BaseException | None) -> None:
        with contextlib.suppress(Exception):  # a callback's failure must not stop the batch
            sequence.on_finish(reason, error)

    # -- the caches -----------------------------------------------------------------------------------------

    def _remove(self, sequence: Sequence, keep: bool = True, closing: list[int] | tuple[()] = ()) -> None:
        """Free `sequence`'s slot: the last running row moves into it (its valid cache copied), so running rows
        stay at the front and a step's views are one contiguous block. A session's cache is kept first, after
        `closing` (_turn_closing) is run through it."""
        slot = sequence.slot
        if keep and sequence.session is not None and sequence.length > 0 and self.sessions.max_sessions > 0:
            n = sequence.length  # the prompt and every generated token but the last (never fed)
            ids = (sequence.prompt + sequence.output)[:n]
            if closing and self._feed(sequence, list(closing)):
                n, ids = n + len(closing), ids + list(closing)
            self.sessions.put(sequence.session, Cached(ids, [k[slot, :, :n].copy() for k in self.keys],
                                                       [v[slot, :, :n].copy() for v in self.values],
                                                       adapter=sequence.cache_key))
        last = self.running[-1]
        if last is not sequence:
            for buffer in (*self.keys, *self.values):
                buffer[slot, :, :last.length] = buffer[last.slot, :, :last.length]
            last.slot = slot
            self.running[slot] = last
        self.running.pop()
        sequence.slot = -1

    def _turn_closing(self, sequence: Sequence, eos: int | None) -> list[int]:
        """The tokens a session's next prompt holds right after this turn's cache: those never fed (a cut answer's
        last token) and the template's turn end (`set_turn_end`). `eos`: the end marker the answer stopped at;
        None for an answer cut at its length."""
        if not self.turn_end or sequence.session is None or self.sessions.max_sessions <= 0:
            return []
        if eos is not None:
            return list(self.turn_end) if self.turn_end[0] == eos else []
        return [sequence.output[-1], *self.turn_end] if sequence.output else []

    def _feed(self, sequence: Sequence, tokens: list[int]) -> bool:
        """Run `tokens` through the finished row (one small prefill, for sessions only); False where the row has
        no room or the run fails (the next turn then prefills them)."""
        if sequence.length + len(tokens) >= self.capacity:
            return False
        ids = np.asarray([tokens], dtype=np.int64)
        mask = np.ones((1, sequence.length + len(tokens)), dtype=np.int64)
        try:
            self._run(ids, mask, sequence.slot, sequence.slot + 1, [sequence.adapter])
        except Exception:  # the answer is already whole; only the next turn's reuse is shorter
            return False
        return True

    def _grow(self, capacity: int) -> None:
        """Buffers of `capacity` positions per slot, the running rows' caches carried over."""
        shape = (self.slots, self.kv_heads, capacity, self.head_size)
        keys = [np.zeros(shape, dtype=np.float32) for _ in range(self.layers)]
        values = [np.zeros(shape, dtype=np.float32) for _ in range(self.layers)]
        if self.capacity:
            keep = min(self.capacity, capacity)
            for old, new in zip((*self.keys, *self.values), (*keys, *values), strict=True):
                new[:, :, :keep] = old[:, :, :keep]
        self.keys, self.values, self.capacity = keys, values, capacity
        self._bindings: dict[tuple[int, int], tuple[Any, list[np.ndarray[Any, Any]]]] = {}

    def _binding(self, first: int, end: int) -> Any:
        """The binding of rows first..end-1's caches, kept while the buffers stay: binding 2 x layers caches
        per step cost a millisecond, a tenth of a one-row step."""
        key = (first, end)
        kept = self._bindings.get(key)
        if kept is not None:
            return kept[0]
        binding = self.session.io_binding()
        binding.bind_output("logits")  # first: the outputs come back in binding order
        views = []
        if self.bank is not None:  # the bank's matrices stay bound while the bank does
            for name, array in self.bank.arrays.items():
                binding.bind_ortvalue_input(name, self.ort.OrtValue.ortvalue_from_numpy(array))
        for layer in range(self.layers):
            for past, present, buffer in ((self.past_key, self.present_key, self.keys[layer]),
                                          (self.past_value, self.present_value, self.values[layer])):
                view = buffer[first:end]
                views.append(view)  # kept alive with the binding that points into it
                binding.bind_ortvalue_input(past % layer, self.ort.OrtValue.ortvalue_from_numpy(view))
                binding.bind_output(present % layer, "cpu", 0, np.float32, list(view.shape), view.ctypes.data)
        if len(self._bindings) >= 4 * self.slots:
            self._bindings.clear()
        self._bindings[key] = (binding, views)
        return binding

    def _session(self, model: str | bytes, weights: str | None = None) -> Any:
        """A session of the graph at `model` (a path), or of a serialized graph whose weights are in `weights`."""
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        if weights is not None:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", weights)
        return self.ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def _run(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any], first: int, end: int,
             adapters: list[str | None]) -> Any:
        """One forward pass of rows first..end-1 (`adapters`: each row's); each layer's past and present are the
        same memory."""
        binding = self._binding(first, end)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self.bank is not None:
            binding.bind_cpu_input(MASK_INPUT, self.bank.mask(adapters))
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()  # the logits only (the caches are ours already)
