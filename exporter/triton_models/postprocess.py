"""Triton Python model: logits -> softmax PROBABILITIES and the LABEL name.

Installed as `<name>_postprocess/<version>/model.py` next to `labels.txt` (one label per line, in
class-id order). Needs only `numpy<2` in the Python backend's environment.

Logits that are not finite (NaN or infinite: a broken model or input the model cannot handle) give the
request an error rather than a label picked from NaN probabilities.
"""

import os
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        directory = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(directory, "labels.txt"), encoding="utf-8") as handle:
            self.labels = np.array([line.rstrip("\n").encode("utf-8") for line in handle if line.strip()],
                                   dtype=np.object_)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, "logits").as_numpy().astype(np.float32)
            bad = ~np.isfinite(logits).all(axis=-1)
            if bad.any():
                rows = ", ".join(str(int(r)) for r in np.flatnonzero(bad)[:5])
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"the model returned non-finite logits (NaN or infinity) for row(s) {rows}: no label can be "
                    "given; the model or its input is broken")))
                continue
            shifted = logits - logits.max(axis=-1, keepdims=True)
            probabilities = np.exp(shifted)
            probabilities /= probabilities.sum(axis=-1, keepdims=True)
            labels = self.labels[probabilities.argmax(axis=-1)].reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("LABEL", labels),
                pb_utils.Tensor("PROBABILITIES", probabilities.astype(np.float32)),
            ]))
        return responses
