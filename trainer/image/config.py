"""An image classifier's training options."""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneship.trainer.config import TASK_HELP, LinearHeadOptions, TrainConfig


@dataclass
class ImageTrainConfig(LinearHeadOptions, TrainConfig):
    task: str = field(default="image-classification", metadata=TASK_HELP)
    image_column: str = field(default="image", metadata={
        "help": "images: column holding the image path (relative paths are relative to the table)"})
    image_size: int | None = field(default=None, metadata={
        "help": "images: side of the square the backbone sees (default: the backbone's, 224); smaller is faster"})
    augment: bool = field(default=True, metadata={
        "help": "images, full and lora: random crops and horizontal flips of the training images"})
