"""Typed gRPC client for Triton: protocol-level TritonClient / AsyncTritonClient and task-level
TextClassifier / AsyncTextClassifier, ImageClassifier / AsyncImageClassifier and Generator / AsyncGenerator,
with deadlines, retries and client-side metrics.

Light on purpose: no torch, no transformers.
"""

from typing import TYPE_CHECKING

from tuneship.client._streams import AsyncInferStream, InferStream
from tuneship.client.aio_client import AsyncTritonClient
from tuneship.client.classifier import AsyncClassifier, Classifier
from tuneship.client.errors import (
    DeadlineExceededError,
    InvalidInputError,
    ModelNotReadyError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    TritonError,
)
from tuneship.client.feedback import GenerationRecord, GenerationSink, PredictionSink
from tuneship.client.generator import (
    AsyncGenerator,
    AsyncTextStream,
    Generation,
    Generator,
    TextStream,
    sampling_params,
    wire_options,
)
from tuneship.client.grpc_client import TritonClient
from tuneship.client.image_classifier import AsyncImageClassifier, ImageClassifier
from tuneship.client.metrics import ClientMetrics
from tuneship.client.options import ADMIN_HEADER, ClientOptions, TLSOptions
from tuneship.client.results import InferResult
from tuneship.client.retry import RetryBudget, RetryPolicy
from tuneship.client.text_classifier import AsyncTextClassifier, Prediction, TextClassifier
from tuneship.lazy import lazy_names

__all__ = [
    "ADMIN_HEADER",
    "AsyncClassifier",
    "AsyncGenerator",
    "AsyncImageClassifier",
    "AsyncInferStream",
    "AsyncTextClassifier",
    "AsyncTextStream",
    "AsyncTritonClient",
    "Classifier",
    "ClientMetrics",
    "ClientOptions",
    "DeadlineExceededError",
    "Generation",
    "GenerationRecord",
    "GenerationSink",
    "Generator",
    "ImageClassifier",
    "InferResult",
    "InferStream",
    "InvalidInputError",
    "ModelNotReadyError",
    "PermissionDeniedError",
    "Prediction",
    "PredictionSink",
    "ResourceExhaustedError",
    "RetryBudget",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailableError",
    "TLSOptions",
    "TextClassifier",
    "TextStream",
    "TritonClient",
    "TritonError",
    "sampling_params",
    "wire_options",
]

# What other stages use of this one, loaded on first use (tuneship.lazy); mypy reads the imports below.
_LAZY_NAMES = {
    "PROBE_PARAMETER": "tuneship.client.probe",
    "add_connection_arguments": "tuneship.client.cli",
    "builtin_reviews": "tuneship.client.bench",
    "client_options": "tuneship.client.cli",
    "explained": "tuneship.client.cli",
    "generation_probe": "tuneship.client.probe",
    "probe_inputs": "tuneship.client.probe",
    "read_image_folder": "tuneship.client.images",
    "review_prompts": "tuneship.client.generation_bench",
    "run_generation_bench": "tuneship.client.generation_bench",
    "ready_models": "tuneship.client.cli",
    "run_bench": "tuneship.client.bench",
    "stream_once": "tuneship.client.probe",
}
__getattr__ = lazy_names(__name__, _LAZY_NAMES)
__all__ += sorted([*_LAZY_NAMES])

if TYPE_CHECKING:
    from tuneship.client.bench import builtin_reviews as builtin_reviews
    from tuneship.client.bench import run_bench as run_bench
    from tuneship.client.cli import (
        add_connection_arguments as add_connection_arguments,
    )
    from tuneship.client.cli import (
        client_options as client_options,
    )
    from tuneship.client.cli import (
        explained as explained,
    )
    from tuneship.client.cli import (
        ready_models as ready_models,
    )
    from tuneship.client.generation_bench import review_prompts as review_prompts
    from tuneship.client.generation_bench import run_generation_bench as run_generation_bench
    from tuneship.client.images import read_image_folder as read_image_folder
    from tuneship.client.probe import (
        PROBE_PARAMETER as PROBE_PARAMETER,
    )
    from tuneship.client.probe import (
        generation_probe as generation_probe,
    )
    from tuneship.client.probe import (
        probe_inputs as probe_inputs,
    )
    from tuneship.client.probe import (
        stream_once as stream_once,
    )
