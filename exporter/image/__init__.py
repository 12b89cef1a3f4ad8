"""Image classifiers: checkpoint -> validated ONNX variants -> preprocess / model / postprocess / ensemble."""
