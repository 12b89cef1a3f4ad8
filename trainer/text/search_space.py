"""What `tuneship search` varies for a text classifier by default (ranges around what works for MiniLM-sized
encoders on a CPU: a few thousand texts, one to three epochs)."""

from __future__ import annotations

from tuneship.space import Choice, Floats, Ints, TaskSpace

_LENGTH = Choice((64, 128))
_EPOCHS = Ints(1, 3)
_BATCH = Choice((16, 32))

SPACE = TaskSpace(
    task="text-classification",
    methods={
        "full": {"learning_rate": Floats(1e-5, 1.5e-4, log=True), "epochs": _EPOCHS, "batch_size": _BATCH,
                 "warmup_ratio": Floats(0.0, 0.2), "weight_decay": Floats(0.0, 0.1), "max_length": _LENGTH},
        "lora": {"learning_rate": Floats(1e-4, 3e-3, log=True), "epochs": _EPOCHS, "batch_size": _BATCH,
                 "lora_rank": Choice((4, 8, 16)), "lora_alpha": Choice((8, 16, 32)),
                 "lora_dropout": Floats(0.0, 0.2), "max_length": _LENGTH},
        "ptuning": {"learning_rate": Floats(3e-4, 1e-2, log=True), "epochs": _EPOCHS, "batch_size": _BATCH,
                    "num_virtual_tokens": Choice((10, 20, 30)), "max_length": _LENGTH},
        "prompt-tuning": {"learning_rate": Floats(1e-3, 3e-2, log=True), "epochs": _EPOCHS, "batch_size": _BATCH,
                          "num_virtual_tokens": Choice((10, 20, 30)), "max_length": _LENGTH},
        "features": {"classifier": Choice(("logreg", "svm")), "pooling": Choice(("mean", "cls")),
                     "max_length": _LENGTH},
    },
    precisions=("fp32", "int8"),
    layouts=("ensemble", "single"),
    default={"method": "full", "precision": "auto"},
    quality="accuracy",
    layered=True,
)
