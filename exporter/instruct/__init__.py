"""Export of instruction-tuned causal LMs: onnxruntime-genai models served by a decoupled Triton model."""
