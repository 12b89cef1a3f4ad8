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
    with pytest.raises(DataError, match=r"recipe\.toml: cannot parse recipe"):
        config_from_args(_parse("--recipe", str(recipe)))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(DataError, match="unknown --method 'adapters'"):
        config_from_args(_parse("--method", "adapters"))
