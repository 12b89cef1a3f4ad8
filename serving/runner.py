"""The model runner: onnxruntime-genai's decoder graph run with ONNX Runtime over the engine's key/value buffers,
one forward pass for any contiguous block of rows, with the LoRA adapter bank when adapters are loaded.

onnxruntime-genai 0.18's own engine batches only statically on a CPU and its paged attention is CUDA-only, so
the engine drives the graph itself: GroupQueryAttention reads each row's length from the attention mask, and its
past and present are bound to the same memory (nothing is copied per step).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .adapters import MASK_INPUT, Bank, LoraWeights, patch_decoder
from .kv_cache import KVCache


@dataclass(frozen=True)
class DecoderConfig:
    """What the engine needs from an onnxruntime-genai model folder's genai_config.json."""

    model_path: str
    layers: int
    kv_heads: int
    head_size: int
    vocab_size: int
    eos: frozenset[int]
    context: int
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"

    @classmethod
    def read(cls, directory: str) -> DecoderConfig:
        with open(os.path.join(directory, "genai_config.json"), encoding="utf-8") as handle:
            config = json.load(handle)["model"]
        decoder = config["decoder"]
        eos = config.get("eos_token_id", [])
        inputs, outputs = decoder.get("inputs", {}), decoder.get("outputs", {})
        return cls(model_path=os.path.join(directory, decoder["filename"]),
                   layers=int(decoder["num_hidden_layers"]), kv_heads=int(decoder["num_key_value_heads"]),
                   head_size=int(decoder["head_size"]), vocab_size=int(config.get("vocab_size", 0)),
                   eos=frozenset(int(t) for t in (eos if isinstance(eos, list) else [eos])),
                   context=int(config.get("context_length", 1 << 30)),
                   past_key=inputs.get("past_key_names", cls.past_key),
                   past_value=inputs.get("past_value_names", cls.past_value),
                   present_key=outputs.get("present_key_names", cls.present_key),
                   present_value=outputs.get("present_value_names", cls.present_value))


class DecoderRunner:
    def __init__(self, config: DecoderConfig, cache: KVCache, threads: int = 0) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.config = config
        self.cache = cache
        self.threads = threads or len(os.sched_getaffinity(0))
        self.session = self._session(config.model_path)
        # LoRA: the bank graph's shapes once the first adapter came, and the bank in use.
        self.lora_shapes: dict[str, tuple[int, int]] | None = None
        self.bank: Bank | None = None
        self._bindings: dict[tuple[int, int], tuple[Any, list[np.ndarray[Any, Any]]]] = {}
        self._generation = cache.generation

    # -- adapters -------------------------------------------------------------------------------------------

    def bank_graph(self) -> tuple[Any, dict[str, tuple[int, int]]]:
        """A session of the decoder with the adapter bank after every linear node, and its nodes' shapes (built
        in the caller's thread: the engine keeps decoding meanwhile)."""
        graph, shapes, folder = patch_decoder(self.config.model_path)
        return self._session(graph, folder), shapes

    def use_bank(self, adapters: dict[str, LoraWeights], graph: tuple[Any, dict[str, tuple[int, int]]] | None) -> None:
        """Serve `adapters` from the next run on (`graph`: bank_graph()'s, the first time)."""
        if graph is not None:
            self.session, self.lora_shapes = graph
        if self.lora_shapes is None:
            return
        self.bank = Bank(adapters, self.lora_shapes)
        self._bindings.clear()

    # -- running --------------------------------------------------------------------------------------------

    def run(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any], first: int, end: int,
            adapters: list[str | None]) -> Any:
        """One forward pass of rows first..end-1 (`adapters`: each row's); the logits of every position fed.
        ONNX Runtime's outputs are views a later run may reuse: copy what must outlive the next run."""
        binding = self._binding(first, end)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self.bank is not None:
            binding.bind_cpu_input(MASK_INPUT, self.bank.mask(adapters))
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()  # the logits only (the caches are ours already)

    def _binding(self, first: int, end: int) -> Any:
        """The binding of rows first..end-1's caches, kept while the buffers stay: binding 2 x layers caches
        per step cost a millisecond, a tenth of a one-row step."""
        if self._generation != self.cache.generation:
            self._bindings.clear()
            self._generation = self.cache.generation
        key = (first, end)
        kept = self._bindings.get(key)
        if kept is not None:
            return kept[0]
        config, cache = self.config, self.cache
        binding = self.session.io_binding()
        binding.bind_output("logits")  # first: the outputs come back in binding order
        views = []
        if self.bank is not None:  # the bank's matrices stay bound while the bank does
            for name, array in self.bank.arrays.items():
                binding.bind_ortvalue_input(name, self.ort.OrtValue.ortvalue_from_numpy(array))
        for layer in range(config.layers):
            for past, present, buffer in ((config.past_key, config.present_key, cache.keys[layer]),
                                          (config.past_value, config.present_value, cache.values[layer])):
                view = buffer[first:end]
                views.append(view)  # kept alive with the binding that points into it
                binding.bind_ortvalue_input(past % layer, self.ort.OrtValue.ortvalue_from_numpy(view))
                binding.bind_output(present % layer, "cpu", 0, np.float32, list(view.shape), view.ctypes.data)
        if len(self._bindings) >= 4 * cache.slots:
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
