"""ONNX Runtime bridge: a Python-based Triton backend that serves `onnxruntime_onnx` models."""
