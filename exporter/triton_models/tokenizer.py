"""Triton Python model: raw TEXT -> token tensors, with the checkpoint's own fast tokenizer.

Installed as `<name>_tokenizer/<version>/model.py` next to `tokenizer.json`. Needs `tokenizers` and
`numpy<2` in the Python backend's environment (the NGC image: `pip install tokenizers "numpy<2"`).

Each call's texts are padded to the longest, rounded up to a multiple of `pad_to_multiple_of` (a config
parameter), so that requests tokenized in different calls can still be batched together by the model.

Each request is checked on its own before it joins the batch: an empty text, or one over `max_text_bytes`
(a config parameter), gets its own INVALID_ARG error, and the other requests of the batch are answered.
The byte limit bounds the work one caller can cause: the tokenizer reads a whole text before truncating it.

Quality metrics (unless the `quality_metrics` parameter is "false"), labelled with the pipeline's name:
`tuneship_texts_refused_total{reason}` (empty, too_long) and `tuneship_texts_truncated_total` (texts longer than
the model reads: their ends were not classified).
"""

import json
import os
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


def _invalid(message: str) -> Any:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(parameters.get("max_length", "512"))
        # Generous: a token is a few bytes, so this admits texts far longer than the model reads.
        self.max_text_bytes = int(parameters.get("max_text_bytes", str(self.max_length * 128)))
        self.outputs = [o["name"] for o in config["output"]]  # the token tensors (unused by pipeline.py)
        directory = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
        # Saved tokenizers may pad every text to a fixed length: pad to the longest text of the
        # execute() call instead, so short reviews cost what they should.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        pad_id = int(parameters.get("pad_token_id", "0"))
        pad_token = parameters.get("pad_token", "[PAD]")
        # Lengths in buckets: requests tokenized in different calls then share a shape, which Triton's batcher
        # needs to merge them in front of the model.
        multiple = int(parameters.get("pad_to_multiple_of", "1"))
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token,
                                      pad_to_multiple_of=multiple if multiple > 1 else None)
        self.families: dict[str, Any] = {}
        self.refused: dict[str, Any] = {}
        self.truncated: Any = None
        # Counted here, sent at most once per flush_s: each update is a call into the server.
        self.pending_truncated, self.flushed = 0, time.monotonic()
        self.flush_s = float(parameters.get("quality_flush_s", "1.0"))
        if parameters.get("quality_metrics", "true") == "true" and hasattr(pb_utils, "MetricFamily"):
            base = {"model": parameters.get("pipeline", args["model_name"].removesuffix("_tokenizer")),
                    "version": args["model_version"]}
            counter = pb_utils.MetricFamily.COUNTER
            self.families = {
                "refused": pb_utils.MetricFamily("tuneship_texts_refused_total", "Texts refused, by reason", counter),
                "truncated": pb_utils.MetricFamily("tuneship_texts_truncated_total",
                                                   "Texts longer than the model reads (their ends were cut)",
                                                   counter),
            }
            self.refused = {reason: self.families["refused"].Metric(labels={**base, "reason": reason})
                            for reason in ("empty", "too_long")}
            self.truncated = self.families["truncated"].Metric(labels=base)

    def _flush(self) -> None:
        if self.pending_truncated:
            self.truncated.increment(self.pending_truncated)
        self.pending_truncated, self.flushed = 0, time.monotonic()

    def finalize(self) -> None:
        if self.truncated is not None:
            self._flush()

    def _texts(self, request: Any) -> tuple[list[str], str | None]:
        """The request's texts, or an error message saying which one is refused and why."""
        texts, problem, reason = self._check(request)
        if reason in self.refused:
            self.refused[reason].increment(1)
        return texts, problem

    def _check(self, request: Any) -> tuple[list[str], str | None, str]:
        values = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
        texts = []
        for row, value in enumerate(values):
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            if len(raw) > self.max_text_bytes:
                return [], (f"TEXT row {row}: {len(raw)} bytes, over this model's limit of {self.max_text_bytes} "
                            f"(max_text_bytes; the model reads at most {self.max_length} tokens anyway)"), "too_long"
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                return [], f"TEXT row {row} is empty or only whitespace: there is nothing to classify", "empty"
            texts.append(text)
        return texts, None, ""

    def encode(self, requests: list[Any]) -> tuple[list[Any], list[int], dict[str, Any]]:
        """(a response per request, None where it is to be answered; texts per request; the token arrays of
        every accepted text, in request order). Shared with the fused pipeline model (pipeline.py)."""
        texts: list[str] = []
        sizes: list[int] = []
        responses: list[Any] = [None] * len(requests)
        for index, request in enumerate(requests):
            batch, problem = self._texts(request)
            if problem is not None:
                responses[index] = pb_utils.InferenceResponse(error=_invalid(problem))
                sizes.append(0)
                continue
            texts.extend(batch)
            sizes.append(len(batch))
        arrays: dict[str, Any] = {}
        if texts:
            # One padded length for the whole call, so the model's dynamic batcher can merge these requests.
            encodings = self.tokenizer.encode_batch(texts)
            if self.truncated is not None:
                # Only a batch padded to the limit can hold a cut text: no per-text look otherwise.
                if len(encodings[0].ids) >= self.max_length:
                    self.pending_truncated += sum(1 for e in encodings if e.overflowing)
                if self.pending_truncated and time.monotonic() - self.flushed >= self.flush_s:
                    self._flush()
            arrays = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
        return responses, sizes, arrays

    def execute(self, requests: list[Any]) -> list[Any]:
        responses, sizes, arrays = self.encode(requests)
        offset = 0
        for index, size in enumerate(sizes):
            if responses[index] is not None:
                continue
            tensors = [pb_utils.Tensor(name, arrays[name][offset:offset + size]) for name in self.outputs]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
            offset += size
        return responses
