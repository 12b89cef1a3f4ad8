"""What the search tests share: a tiny space, and served figures fixed per method instead of measured (tests
compare latency objectives only through figures they fix). Run as a script, it is one search worker with those
figures (for the tests that kill a search or start two workers on one study)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tuneship.search.measure import Served
from tuneship.search.options import SearchOptions
from tuneship.search.space import Space
from tuneship.tasks import Task

FULL_YAML = """\
methods: [full]
precisions: [fp32]
full:
  learning_rate: {low: 0.001, high: 0.005, log: true}
  epochs: 1
  batch_size: 16
  max_length: 32
"""
FEATURES_YAML = """\
features:
  classifier: [logreg]
  max_length: 32
"""

SPACE_YAML = FULL_YAML.replace("[full]", "[full, features]") + FEATURES_YAML

# p99 by method: features is the fast one in these tests.
P99_MS = {"full": 20.0, "features": 8.0, "lora": 14.0}


class FixedMeasurer:
    """The served figures of a trial, from its method; `fail` makes the trials with those numbers fail."""

    def __init__(self, output: Path, fail: tuple[int, ...] = ()) -> None:
        self.output = output
        self.fail = fail
        self.measured: list[str] = []

    def __call__(self, model: str, task: Task) -> Served:
        from tuneship.trainer import read_checkpoint

        number = int(model.rsplit("-", 1)[1])
        self.measured.append(model)
        if number in self.fail:
            raise RuntimeError(f"{model} did not load (a failure the test asked for)")
        assert (self.output / "repository" / model / "config.pbtxt").is_file(), "measured before it was published"
        method = read_checkpoint(self.output / "trials" / f"{number:03d}" / "checkpoint").method
        return Served(p99_ms=P99_MS[method], throughput=1000.0 / P99_MS[method], served_mb=50.0)

    def close(self) -> None:
        pass


def fixed(fail: tuple[int, ...] = ()) -> object:
    def factory(options: SearchOptions, space: Space) -> FixedMeasurer:
        return FixedMeasurer(options.output, fail)

    return factory


def options(output: Path, train: Path, evaluation: Path, model: Path, space: Path, **given: object) -> SearchOptions:
    training = {"data": str(train), "eval_file": str(evaluation), "max_train_samples": 160, "max_eval_samples": 40}
    given.setdefault("prune", False)  # pruning has its own test; elsewhere every trial runs to its end
    return SearchOptions(output=output, training=training, models=(str(model),), space=space, gate_samples=40,
                         **given)  # type: ignore[arg-type]


if __name__ == "__main__":  # python search_helpers.py '{"output": ..., ...}': one worker
    from tuneship.search.study import search

    given = json.loads(sys.argv[1])
    paths = {key: Path(given.pop(key)) for key in ("output", "train", "evaluation", "model", "space")}
    search(options(**paths, **given), measurer=fixed())  # type: ignore[arg-type]
