"""Text classifiers: checkpoint -> validated, fused, padding-free, int8 ONNX variants -> tokenizer / model /
postprocess / ensemble (or the single-model layout)."""
