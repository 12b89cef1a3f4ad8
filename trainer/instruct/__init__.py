"""Instruction tuning of causal language models (the `instruct` task)."""
