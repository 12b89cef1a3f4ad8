"""Recipe files and flags: flags override the file; mistakes name the file and the option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tuneship.trainer.config import add_config_arguments, config_from_args
from tuneship.trainer.errors import DataError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(argv)


def test_yaml_recipe_with_flag_override(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("method: lora\nlora-rank: 4\nepochs: 3\nlearning_rate: 0.001\n")
    config = config_from_args(_parse("--recipe", str(recipe), "--epochs", "1", "--group-by-length", "false"))
    assert config.method == "lora" and config.lora_rank == 4
    assert config.epochs == 1.0
    assert config.learning_rate == 0.001
    assert config.group_by_length is False


def test_toml_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('method = "features"\nclassifier = "svm"\n')
    config = config_from_args(_parse("--recipe", str(recipe)))
    assert (config.method, config.classifier) == ("features", "svm")


def test_default_learning_rate_depends_on_the_method() -> None:
    assert config_from_args(_parse()).resolved_learning_rate() == 5e-5
    assert config_from_args(_parse("--method", "lora")).resolved_learning_rate() == 1e-3
    assert config_from_args(_parse("--method", "lora", "--learning-rate", "1e-4")).resolved_learning_rate() == 1e-4


def test_unknown_recipe_option_names_the_file(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("methd: lora\n")
    with pytest.raises(DataError, match=r"recipe\.yaml: unknown option 'methd'"):
        config_from_args(_parse("--recipe", str(recipe)))


def test_unparsable_recipe_is_reported(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("method = \n")
    with pytest.raises(DataError, match=r"recipe\.toml: cannot parse the recipe"):
        config_from_args(_parse("--recipe", str(recipe)))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(DataError, match="unknown --method 'adapters'"):
        config_from_args(_parse("--method", "adapters"))


def test_each_task_is_trained_with_its_own_options_class(tmp_path: Path) -> None:
    from tuneship.trainer import ImageTrainConfig, InstructTrainConfig, TextTrainConfig

    assert type(config_from_args(_parse())) is TextTrainConfig
    instruct = config_from_args(_parse("--task", "instruct", "--system-prompt", "Be brief."))
    assert type(instruct) is InstructTrainConfig and instruct.system_prompt == "Be brief."
    assert (instruct.method, instruct.max_length) == ("lora", 256)  # the task's defaults
    image = config_from_args(_parse("--task", "image-classification", "--image-size", "64"))
    assert type(image) is ImageTrainConfig and image.image_size == 64 and not hasattr(image, "max_length")


def test_an_option_of_another_task_is_refused_naming_it_and_its_task(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"tuneship train: --pooling is an option of text-classification training, "
                                         r"not of --task image-classification"):
        config_from_args(_parse("--task", "image-classification", "--pooling", "cls"))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("system_prompt: Be brief.\nimage_size: 64\n")
    with pytest.raises(DataError, match=r"recipe\.yaml: --image-size is an option of image-classification training; "
                                         r"--system-prompt is an option of instruct training, not of --task "
                                         r"text-classification"):
        config_from_args(_parse("--recipe", str(recipe)))


def test_common_options_become_the_tasks_own_and_another_tasks_are_refused() -> None:
    from tuneship.trainer import ImageTrainConfig, InstructTrainConfig, TrainConfig
    from tuneship.trainer.config import as_task_config

    image = as_task_config(TrainConfig(task="image-classification", epochs=1.0))
    assert image == ImageTrainConfig(epochs=1.0)
    with pytest.raises(DataError, match="--task instruct is trained with InstructTrainConfig, not ImageTrainConfig"):
        as_task_config(ImageTrainConfig(task="instruct"))
    assert as_task_config(InstructTrainConfig()).task == "instruct"
