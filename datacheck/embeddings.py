"""Mean-pooled sentence embeddings from the trainer's encoder (the features method's extraction), L2-normalised:
one matrix serves the label model, near duplicates and outliers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneship.datacheck.options import DataCheckError


def embed(texts: Sequence[str], encoder: str, max_length: int) -> np.ndarray[Any, Any]:
    import transformers
    from transformers import AutoModel, AutoTokenizer

    from tuneship.trainer import TrainingError
    from tuneship.trainer.text.base_models import resolve_base_model
    from tuneship.trainer.text.methods.features import extract_features

    try:
        base = resolve_base_model(encoder)
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModel.from_pretrained(str(base))
    except (TrainingError, OSError, ValueError) as error:
        raise DataCheckError(f"--encoder {encoder}: cannot be loaded: {str(error).splitlines()[0]}") from None
    vectors = extract_features(model, tokenizer, texts, max_length, "mean", 64, "embedding texts")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
