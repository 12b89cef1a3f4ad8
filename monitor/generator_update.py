"""`tuneship update` of an instruct model: continued instruction tuning on corrected answers, published only if the
new version answers better as served.

1. New data: conversations whose last turn is the right answer (`tuneship feedback export` writes the corrections
   and the answers rated good this way), validated like training data and split into a training part and a
   held-out part (seeded).
2. Continued tuning from the serving checkpoint (its recipe: method, LoRA settings, learning rate) on the new part
   mixed with a replay sample of the original training data, so the old task is not forgotten.
3. Export of the candidate into a scratch repository with the serving version's settings: the same precision
   (int4 method), the generator's serving parameters as its config has them now, and the usual validation and gate.
4. The promotion gate: both versions as served (the published ONNX folders through the continuous batcher, greedy)
   answer the held-out corrections (the candidate must win by `margin_points` of exact match) and the original
   eval prompts (it may lose at most `max_original_drop_points`).
5. A passing candidate's files are copied into the served repository as the next version and, with a server,
   loaded with the usual hot update (Triton serves the old version until the new one is ready).

An adapter (`--model chat:support`) is updated as an adapter: a new LoRA tuned from the base weights it is served on
(with the adapter's recipe, on its corrections and a replay of its own training data), exported with `--adapter-of`
into a scratch copy of the base, gated with both adapters served on the same base version, and published by
replacing the adapter's folder in one rename (the generator watches it: no reload).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tuneship.monitor.generations import answer_words
from tuneship.monitor.options import UpdateOptions
from tuneship.monitor.update import GateRow, UpdateError, UpdateReport, _publish, _sample, served_model
from tuneship.repository import ADAPTERS_DIR, REPORT_FILE, SOURCE_FILE

GATE_PROMPTS_MAX = 200


def _matcher(labels: list[str]) -> Any:
    """How answers are compared: a closed-set model's by its first word (as the export gate reads them), any other
    word for word, ignoring case and punctuation."""
    if labels:
        from tuneship.trainer import normalise

        return normalise
    return answer_words


def served_exact_match(version_dir: Path, tokenizer: Any, conversations: list[Any], slots: int, same: Any,
                       adapter_dir: Path | None = None) -> float:
    """Exact match of a published version's greedy answers (through a published adapter's folder, if given),
    generated as it serves them."""
    from tuneship.exporter import served_greedy
    from tuneship.trainer import prompt_ids

    if not conversations:
        return float("nan")
    answers = [len(tokenizer.encode(c.answer, add_special_tokens=False)) for c in conversations]
    max_tokens = max(8, max(answers) + 4)
    generated = served_greedy(version_dir, [prompt_ids(tokenizer, c) for c in conversations], max_tokens, slots,
                              adapter_dir)
    texts = [str(tokenizer.decode(tokens, skip_special_tokens=True)).strip() for tokens in generated]
    return sum(same(text) == same(c.answer) for text, c in zip(texts, conversations, strict=True)) / len(texts)


def _check_answers(new: Any, labels: list[str], same: Any) -> None:
    if not labels:
        return
    known = {same(label) for label in labels}
    for conversation in new.conversations:
        if same(conversation.answer) not in known:
            raise UpdateError(f"{conversation.source}: the answer {conversation.answer!r} is not one of the model's "
                              f"answers {labels}; correct it to one of them (or drop the line)")


def _keep_training_data(checkpoint: Path, data: Path) -> None:
    """The candidate's training data (corrections and replay) kept inside it, and its recipe pointed there: the
    next update replays it (the scratch copy it was trained from is removed)."""
    import json

    from tuneship.repository import write_text_atomic

    kept = checkpoint / "update_train.jsonl"
    shutil.copyfile(data, kept)
    manifest_path = checkpoint / "tuneship.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest.setdefault("hyperparameters", {})["data"] = str(kept.resolve())
    manifest["hyperparameters"]["eval_file"] = str((checkpoint / "eval.jsonl").resolve())
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")


def update_generator(options: UpdateOptions, parent: int, checkpoint: Path, manifest: dict[str, Any]) -> UpdateReport:
    import json

    from transformers import AutoTokenizer

    from tuneship.exporter import (
        InstructExportOptions,
        export_checkpoint,
        generation_serving,
        publish_adapter,
    )
    from tuneship.progress import step
    from tuneship.repository import RepositoryError, copy_version, latest_version, repository_lock
    from tuneship.trainer import (
        DataError,
        InstructTrainConfig,
        config_from_hyperparameters,
        data_fingerprint,
        load_instructions,
        prepare_instructions,
        read_conversations,
        split_instructions,
        train,
        write_conversations,
    )

    model = served_model(options.name)
    adapter = options.name.split(":", 1)[1] if model != options.name else None
    if options.new_data.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UpdateError(f"{options.new_data}: an instruct model is updated with conversations (JSONL, the right "
                          "answer as the last assistant turn; `tuneship feedback export` writes them)")
    labels = [str(label) for label in manifest.get("labels", [])]
    same = _matcher(labels)
    try:
        new = load_instructions(str(options.new_data))
        _check_answers(new, labels, same)
        new_train, holdout = split_instructions(new, options.holdout_fraction, options.seed)
    except DataError as error:
        raise UpdateError(str(error)) from None
    recipe = dict(manifest.get("hyperparameters", {}))
    original = config_from_hyperparameters(recipe)
    if not isinstance(original, InstructTrainConfig):
        raise UpdateError(f"{checkpoint}: not an instruct checkpoint (task {original.task})")
    if manifest.get("method") == "ptuning":
        raise UpdateError(f"{checkpoint}: a P-tuning checkpoint is not served (its prompt encoder cannot be folded "
                          "into the weights), so it has no served version to update")
    if adapter is not None and manifest.get("method") != "lora":
        raise UpdateError(f"{checkpoint}: adapter {adapter!r} came from a {manifest.get('method')} checkpoint; "
                          "an adapter is retrained with LoRA")
    with step("reading the original training data for replay"):
        original_train, _ = prepare_instructions(original)
    replay = _sample(original_train.conversations, round(options.replay_ratio * len(new_train.conversations)),
                     options.seed)
    eval_path = checkpoint / "eval.jsonl"
    original_eval = read_conversations(eval_path, GATE_PROMPTS_MAX) if eval_path.is_file() else []
    report_path = options.repository / model / REPORT_FILE
    served = json.loads(report_path.read_text()) if report_path.is_file() else {}
    serving = generation_serving(options.repository, model)
    slots = serving.max_concurrency
    base_dir = options.repository / model / str(parent)
    source_path = base_dir / SOURCE_FILE
    source = json.loads(source_path.read_text()) if source_path.is_file() else {}
    if adapter is None and source.get("model") and source.get("model") != source.get("checkpoint"):
        raise UpdateError(f"{options.name} v{parent} serves the base model {source['model']} (published with "
                          f"--base-model), not a tuned checkpoint: update its adapters (--model {model}:ADAPTER)")
    # An adapter is tuned again from the base weights it is served on (so it fits them); a model continues from
    # its own checkpoint.
    start = str(manifest.get("base_model_path") or recipe.get("model")) if adapter is not None else str(checkpoint)

    options.output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".update-", dir=options.output.parent))
    try:
        data_dir = scratch / "data"
        data_dir.mkdir()
        mixed = list(new_train.conversations) + replay
        random.Random(options.seed).shuffle(mixed)
        write_conversations(data_dir / "train.jsonl", type(new)(f"{new.name} + replay", mixed, new.answers))
        write_conversations(data_dir / "holdout.jsonl", holdout)
        overrides: dict[str, Any] = {}
        if options.epochs is not None:
            overrides.update(epochs=options.epochs, max_steps=-1)
        if options.learning_rate is not None:
            overrides["learning_rate"] = options.learning_rate
        config = config_from_hyperparameters(
            recipe, data=str(data_dir / "train.jsonl"), eval_file=str(data_dir / "holdout.jsonl"),
            max_train_samples=None, max_eval_samples=None, output=str(options.output), overwrite=True,
            resume=False, model=start, seed=options.seed, **overrides)
        how = (f"a new {config.method} adapter from the base it is served on" if adapter is not None
               else f"continuing from the serving checkpoint ({config.method})")
        print(f"update of {options.name} (base v{parent}): {len(new_train.conversations)} corrected + {len(replay)} "
              f"replayed original conversations, {how}; {len(holdout.conversations)} corrections held out")
        train(config)
        _keep_training_data(options.output, data_dir / "train.jsonl")
        candidate_repo = scratch / "repository"
        precision = str(served.get("chosen") or "auto")
        try:
            if adapter is None:
                export_checkpoint(InstructExportOptions(
                    checkpoint=options.output, name=model, repository=candidate_repo, precision=precision,
                    target=str(served.get("target") or "cpu"),
                    int4_method=str(served.get("int4_method") or "k_quant"), generation=serving))
            else:
                copy_version(options.repository, candidate_repo, model, parent)
                export_checkpoint(InstructExportOptions(
                    checkpoint=options.output, name=adapter, adapter_of=model, repository=candidate_repo,
                    generation=serving))
        except RepositoryError as error:  # ExportError is one
            raise UpdateError(f"the candidate could not be exported as the serving one is: {error}") from None
        tokenizer = AutoTokenizer.from_pretrained(str(options.output))
        versions: dict[str, tuple[Path, Path | None]]
        if adapter is None:
            versions = {"serving": (base_dir, None), "candidate": (latest_version(candidate_repo, model), None)}
        else:
            versions = {"serving": (base_dir, options.repository / model / ADAPTERS_DIR / adapter),
                        "candidate": (base_dir, candidate_repo / model / ADAPTERS_DIR / adapter)}

        def score(which: str, conversations: list[Any]) -> float:
            folder, adapter_dir = versions[which]
            return served_exact_match(folder, tokenizer, conversations, slots, same, adapter_dir)

        with step("scoring the serving version and the candidate as served, on the same prompts"):
            rows = [GateRow("corrections (held out)", len(holdout.conversations),
                            score("serving", holdout.conversations), score("candidate", holdout.conversations)),
                    GateRow("original eval prompts", len(original_eval),
                            score("serving", original_eval), score("candidate", original_eval))]
        gain = rows[0].change_points
        drop = -rows[1].change_points if original_eval else 0.0
        passed = gain >= options.margin_points and drop <= options.max_original_drop_points
        reason = (f"held-out corrections {gain:+.1f} points of exact match (needs +{options.margin_points:g}), "
                  f"original eval prompts {-drop:+.1f} points (may lose {options.max_original_drop_points:g})")
        if options.shadow_store is not None:
            print("shadow: not measured for generators (the gate scores both versions on the same prompts)")
        texts = [json.dumps(c.prompt, sort_keys=True) for c in new.conversations]
        report = UpdateReport(
            name=options.name, parent_version=parent, candidate=str(options.output), new_data=str(options.new_data),
            data_fingerprint=data_fingerprint(texts, [c.answer for c in new.conversations]),
            new_train=len(new_train.conversations), new_holdout=len(holdout.conversations), replayed=len(replay),
            rows=[asdict(r) for r in rows], passed=passed, reason=("passed: " if passed else "not published: ")
            + reason, started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        print(report.table())
        print(report.reason)
        if passed and options.publish:
            with repository_lock(options.repository, what=f"tuneship update of {options.name}"):
                if adapter is None:
                    report.published_versions = _publish(options, candidate_repo)
                else:  # the generator watches its adapters' folder: the new one is served without a reload
                    report.published_versions = publish_adapter(candidate_repo / model / ADAPTERS_DIR / adapter,
                                                                options.repository, model, adapter)
            what = f"adapter {adapter} of " if adapter is not None else ""
            print(f"published {what}" + ", ".join(f"{m} v{v}" for m, v in report.published_versions.items()))
        return report
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
