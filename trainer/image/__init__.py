"""Image classification: pretrained CNN backbones, image data, and the three training methods (features, full, lora)."""
