"""What `tuneship search` varies for an image classifier by default: each built-in backbone, frozen (a linear
head on its features) or fine-tuned."""

from __future__ import annotations

from tuneship.space import Choice, Floats, Ints, TaskSpace

SPACE = TaskSpace(
    task="image-classification",
    methods={
        "features": {"classifier": Choice(("logreg", "svm"))},
        "full": {"learning_rate": Floats(5e-5, 1e-3, log=True), "epochs": Ints(1, 4), "batch_size": Choice((16, 32)),
                 "weight_decay": Floats(0.0, 0.1), "augment": Choice((True, False))},
        "lora": {"learning_rate": Floats(3e-4, 5e-3, log=True), "epochs": Ints(1, 4), "batch_size": Choice((16, 32)),
                 "lora_rank": Choice((4, 8, 16)), "lora_alpha": Choice((8, 16, 32))},
    },
    precisions=("fp32", "int8"),
    default={"method": "features", "precision": "auto"},
    quality="accuracy",
    models=("mobilenet_v2", "efficientnet_lite0"),
)
