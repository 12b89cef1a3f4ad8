"""Text classification: labelled texts -> a fine-tuned encoder (full, LoRA, P-tuning, prompt or prefix tuning, or a
linear head on frozen features), saved as a checkpoint every method loads the same way."""
