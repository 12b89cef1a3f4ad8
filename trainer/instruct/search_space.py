"""What `tuneship search` varies for an instruction-tuned generator by default: LoRA's shape and steps (full
fine-tuning of a 135M-parameter model is in the space but slow on a CPU), published at 8 or 4 bits."""

from __future__ import annotations

from tuneship.space import Choice, Floats, Ints, TaskSpace

SPACE = TaskSpace(
    task="instruct",
    methods={
        "lora": {"learning_rate": Floats(1e-4, 2e-3, log=True), "epochs": Ints(1, 3), "lora_rank": Choice((4, 8, 16)),
                 "lora_alpha": Choice((8, 16, 32)), "lora_dropout": Floats(0.0, 0.1),
                 "lora_targets": Choice((None, "q_proj,v_proj"))},  # None: every linear layer
        "full": {"learning_rate": Floats(1e-5, 1e-4, log=True), "epochs": Ints(1, 2)},
    },
    precisions=("int8", "int4"),
    default={"method": "lora", "precision": "auto"},
    quality="exact_match_after",
    fixed={"batch_size": 8},  # the demonstration's: SmolLM2's activations at 32 rows cost more than they save
)
