"""Triton Python model: raw TEXT -> token tensors, with the checkpoint's own fast tokenizer.

Installed as `<name>_tokenizer/<version>/model.py` next to `tokenizer.json`. Needs `tokenizers` and
`numpy<2` in the Python backend's environment (the NGC image: `pip install tokenizers "numpy<2"`).
"""

import json
import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(parameters.get("max_length", "512"))
        self.outputs = [o["name"] for o in config["output"]]
        directory = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
        # Saved tokenizers may pad every text to a fixed length: pad to the longest text of the
        # execute() call instead, so short reviews cost what they should.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        pad_id = int(parameters.get("pad_token_id", "0"))
        pad_token = parameters.get("pad_token", "[PAD]")
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    def execute(self, requests: list[Any]) -> list[Any]:
        texts = []
        sizes = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            batch = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in values]
            texts.extend(batch)
            sizes.append(len(batch))
        # One padded length for the whole call, so the model's dynamic batcher can merge these requests.
        encodings = self.tokenizer.encode_batch(texts)
        arrays = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        responses = []
        offset = 0
        for size in sizes:
            tensors = [pb_utils.Tensor(name, arrays[name][offset:offset + size]) for name in self.outputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            offset += size
        return responses
