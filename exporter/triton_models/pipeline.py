"""Triton Python model: a whole text classifier in one model (tuneship's `single` layout).

Installed as `<name>/<version>/model.py` next to `tokenizer.json`, `model.onnx`, `labels.txt`, `reference.json`
and the two step modules it reuses (`tuneship_tokenizer.py`, `tuneship_postprocess.py`: the ensemble layout's
tokenizer and postprocess models). TEXT in, LABEL and PROBABILITIES out, as the ensemble answers; the same
request checks (empty, too long), the same quality metrics, the same probe handling.

Why it exists: on a CPU server every Python model of the ensemble is a stub process, and each hop copies tensors
through shared memory and waits on the ensemble scheduler; one caller's request paid ~2.5 ms for that against a
1.4 ms model (BENCHMARKS.md, "The Python backend's floor"). Here the texts of every request Triton's dynamic
batcher merged are tokenized together, run through one ONNX Runtime session and answered, in one process.

Needs `numpy<2`, `tokenizers` and `onnxruntime` in the Python backend's environment (requirements.txt beside the
config); the ensemble layout needs only the first two and runs the graph on Triton's native ONNX Runtime backend.
Config parameters: `intra_op_thread_count` (0: ONNX Runtime's default, every core), `graph_level` (-1: basic
optimizations only, for graphs the exporter already optimized; otherwise all), `allow_spinning` ("0": idle ONNX
Runtime threads sleep at once instead of spinning), `tokenizer_threads` ("1": the tokenizer encodes on the calling
thread, without its own thread pool), and the tokenizer's and postprocess's own parameters.
"""

import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tuneship_postprocess import TritonPythonModel as Postprocess
from tuneship_postprocess import is_probe
from tuneship_tokenizer import TritonPythonModel as Tokenizer


def _parameters(args: dict[str, str]) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {k: str(v.get("string_value", "")) for k, v in config.get("parameters", {}).items()}


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        self.pb_utils = pb_utils
        parameters = _parameters(args)
        if parameters.get("tokenizer_threads", "") == "1":  # read by `tokenizers` before each batch
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self.tokenizer = Tokenizer()
        self.tokenizer.initialize(args)
        self.postprocess = Postprocess()
        self.postprocess.initialize(args)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = int(parameters.get("intra_op_thread_count") or 0)
        options.inter_op_num_threads = 1
        if parameters.get("allow_spinning", "1") == "0":  # idle ONNX Runtime threads sleep instead of spinning
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        level = int(parameters.get("graph_level") or 0)
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if level == -1
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        directory = os.path.join(args["model_repository"], args["model_version"])
        self.session = ort.InferenceSession(os.path.join(directory, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        # The first run allocates ONNX Runtime's buffers: done here, not in the first caller's request.
        warm = {name: np.ones((1, 8), dtype=np.int64) for name in self.inputs}
        if "token_type_ids" in warm:
            warm["token_type_ids"][:] = 0
        self.session.run(None, warm)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses, sizes, arrays = self.tokenizer.encode(requests)
        if arrays:
            try:
                logits = self.session.run(None, {name: arrays[name] for name in self.inputs})[0]
            except Exception as error:  # the whole call failed: every request it carried says why
                message = f"the ONNX model failed on this batch: {str(error).splitlines()[0][:300]}"
                return [r if r is not None else self.pb_utils.InferenceResponse(
                    error=self.pb_utils.TritonError(message)) for r in responses]
        answered: list[np.ndarray] = []
        offset = 0
        for index, size in enumerate(sizes):
            if responses[index] is not None:
                continue
            responses[index] = self.postprocess.respond(logits[offset:offset + size], is_probe(requests[index]),
                                                        answered)
            offset += size
        self.postprocess.record(answered)
        return responses

    def finalize(self) -> None:
        self.tokenizer.finalize()
        self.postprocess.finalize()
