"""`tuneship train --task instruct`: instruction fine-tuning of a causal LM with trl's SFTTrainer.

LoRA by default (PEFT, on every linear projection), full fine-tuning or P-tuning on request; the loss is on
the assistant's answer only (trl's prompt/completion format). The checkpoint is self-contained: the model
(LoRA merged, the adapter kept beside it), its tokenizer with the chat template, and the same manifest,
metrics, curves and held-out data as a classifier's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tuneship.trainer.callbacks import extra_callbacks
from tuneship.trainer.checkpoint import (
    EVAL_DATA,
    FORMAT_VERSION,
    MANIFEST,
    METRICS,
    data_fingerprint,
    library_versions,
)
from tuneship.trainer.config import resolved_hyperparameters, save_json, validate_config
from tuneship.trainer.distributed import agree, is_main_process, replicas
from tuneship.trainer.errors import TrainingError
from tuneship.trainer.instruct.base_model import resolve_causal_lm
from tuneship.trainer.instruct.config import InstructTrainConfig
from tuneship.trainer.instruct.data import (
    Conversation,
    InstructData,
    prepare_instructions,
    write_conversations,
)
from tuneship.trainer.instruct.evaluation import (
    exact_match,
    format_instruct_metrics,
    greedy_answers,
    perplexity,
)
from tuneship.trainer.plots import plot_training_curve
from tuneship.trainer.run import (
    TrainResult,
    check_output,
    prepare_work_dir,
    resolved_logging_steps,
    warn,
    work_dir,
    write_checkpoint,
)

ADAPTER_DIR = "adapter"


def _precision(requested: str) -> str:
    """bf16 autocast where the hardware has it: CUDA GPUs, and CPUs with AVX512-BF16 or AMX (1.4x on this CPU)."""
    import torch

    if requested != "auto":
        if requested == "fp16" and not torch.cuda.is_available():
            raise TrainingError("--precision fp16 needs a GPU; use bf16 or fp32 on a CPU")
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "fp32"


def _peft_config(config: InstructTrainConfig) -> Any:
    from peft import LoraConfig, PromptEncoderConfig, TaskType

    if config.method == "lora":
        targets: Any = ([t.strip() for t in config.lora_targets.split(",") if t.strip()] if config.lora_targets
                        else "all-linear")
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_rank, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, target_modules=targets)
    if config.method == "ptuning":
        return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens,
                                   encoder_hidden_size=config.prompt_encoder_hidden_size)
    return None


def _dataset(data: InstructData) -> Any:
    from datasets import Dataset

    # trl's conversational prompt/completion form: the loss is on the completion (the answer) only.
    return Dataset.from_list([{"prompt": c.prompt, "completion": [c.messages[-1]]} for c in data.conversations])


def _check_tokenizer(tokenizer: Any, base: Path) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(f"{base}: the tokenizer has no chat template; instruction tuning formats every "
                            "conversation with it (use an instruct/chat model, or add a template)")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def _fingerprint(data: InstructData) -> str:
    return data_fingerprint([json.dumps(c.prompt, sort_keys=True) for c in data.conversations],
                            [c.answer for c in data.conversations])


def _exact_match_subset(data: InstructData, config: InstructTrainConfig) -> list[Conversation]:
    if not data.answers or config.exact_match_samples <= 0:
        return []
    return data.conversations[:config.exact_match_samples]


def train(config: InstructTrainConfig) -> TrainResult:
    validate_config(config)
    output = Path(config.output)
    check_output(output, config.overwrite)
    train_data, eval_data = prepare_instructions(config)
    fingerprint = _fingerprint(train_data)
    agree("training and eval data", f"{fingerprint} {_fingerprint(eval_data)}")
    for note in train_data.notes:
        print(f"note: {note}")
    print(f"{train_data.name}: {len(train_data.conversations)} conversations; {eval_data.name}: "
          f"{len(eval_data.conversations)}" + (f"; answers: {', '.join(train_data.answers)}" if train_data.answers
                                               else ""))
    base = resolve_causal_lm(str(config.model))

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from tuneship.trainer.progress import TrainingProgress

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    _check_tokenizer(tokenizer, base)
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    probe = _exact_match_subset(eval_data, config) if is_main_process() else []
    metrics: dict[str, Any] = {}
    if probe:
        print(f"measuring the base model: greedy answers to {len(probe)} held-out prompts ...", flush=True)
        metrics["exact_match_before"] = round(exact_match(
            greedy_answers(model, tokenizer, probe, config.max_new_tokens, config.eval_batch_size,
                           progress="base model's answers"), probe), 4)

    work = work_dir(output)
    resume_from = prepare_work_dir(work, config)

    precision = _precision(config.precision)
    per_step = config.batch_size * config.gradient_accumulation_steps
    steps_per_epoch = max(1, -(-len(train_data.conversations) // per_step))
    total_steps = config.max_steps if config.max_steps > 0 else max(1, int(steps_per_epoch * config.epochs))
    logging_steps = resolved_logging_steps(config, total_steps)
    strategy = "steps" if config.eval_steps else "epoch"
    args = SFTConfig(
        output_dir=str(work), num_train_epochs=config.epochs, max_steps=config.max_steps,
        learning_rate=config.resolved_learning_rate(), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=int(total_steps * config.warmup_ratio), weight_decay=config.weight_decay,
        lr_scheduler_type="linear", eval_strategy=strategy, save_strategy=strategy,
        eval_steps=config.eval_steps or 500, save_steps=config.eval_steps or 500, save_total_limit=2,
        logging_steps=logging_steps, report_to=[], seed=config.seed, data_seed=config.seed,
        dataloader_num_workers=0, disable_tqdm=True, max_length=config.max_length,
        bf16=precision == "bf16", fp16=precision == "fp16", completion_only_loss=True,
        use_cpu=not torch.cuda.is_available(),  # transformers allows CPU bf16 autocast only when told so
        ddp_find_unused_parameters=False,  # every trained weight takes part in each step
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=_dataset(train_data), eval_dataset=_dataset(eval_data),
                         processing_class=tokenizer, peft_config=_peft_config(config))
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainingProgress())
    for callback in extra_callbacks():
        trainer.add_callback(callback)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.monotonic() - started
    # The last evaluation, if the Trainer ran one at the final step; else one now (on every rank: it is sharded).
    finals = [e for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == trainer.state.global_step]
    evaluation = finals[-1] if finals else trainer.evaluate()
    trained = trainer.model
    distributed = replicas(trained)
    if not is_main_process():
        return TrainResult(checkpoint=output, metrics={}, train_seconds=seconds)
    metrics.update({
        "eval_loss": round(float(evaluation["eval_loss"]), 4),
        "perplexity": round(perplexity(float(evaluation["eval_loss"])), 3),
        "eval_examples": len(eval_data.conversations),
        "train_seconds": round(seconds, 1),
        "train_examples_per_second": round(float(result.metrics.get("train_samples_per_second", 0.0)), 2),
        "steps": int(trainer.state.global_step),
        "precision": precision,
    })
    if probe:
        print(f"measuring the fine-tuned model on the same {len(probe)} prompts ...", flush=True)
        metrics["exact_match_after"] = round(exact_match(
            greedy_answers(trained, tokenizer, probe, config.max_new_tokens, config.eval_batch_size,
                           progress="fine-tuned model's answers"), probe), 4)
        metrics["exact_match_examples"] = len(probe)

    def fill(staging: Path) -> None:
        method_fields = _save(config, trained, staging)
        tokenizer.save_pretrained(str(staging))
        write_conversations(staging / EVAL_DATA, eval_data)
        save_json(staging / METRICS, metrics)
        save_json(staging / "training_log.json", trainer.state.log_history)
        plot_training_curve(trainer.state.log_history, staging / "training_curve.png",
                            f"{config.method} instruction tuning of {Path(str(config.model)).name} on "
                            f"{train_data.name} ({len(train_data.conversations)} conversations)", metric="none")
        manifest = _manifest(config, base, train_data, eval_data, metrics, trained, precision, logging_steps)
        manifest["data"]["fingerprint"] = fingerprint
        if distributed:
            manifest["distributed"] = distributed
        manifest.update(method_fields)
        save_json(staging / MANIFEST, manifest)

    write_checkpoint(output, fill, work)
    print(format_instruct_metrics(metrics))
    if "exact_match_after" in metrics and metrics["exact_match_after"] <= metrics["exact_match_before"]:
        warn("fine-tuning did not improve the exact-match accuracy; train longer or change --learning-rate")
    print(f"checkpoint: {output}  ({config.method}: {seconds:.0f}s; curve: {output / 'training_curve.png'})")
    return TrainResult(checkpoint=output, metrics=metrics, train_seconds=seconds)


def _save(config: InstructTrainConfig, trained: Any, directory: Path) -> dict[str, Any]:
    """LoRA: the merged model at the root, the adapter in adapter/. P-tuning: the base model at the root
    and the prompt encoder in adapter/ (it cannot be folded into the weights). Full: the model."""
    fields: dict[str, Any] = {}
    if hasattr(trained, "get_nb_trainable_parameters"):
        trainable, total = trained.get_nb_trainable_parameters()
        fields.update(trainable_parameters=int(trainable), total_parameters=int(total))
    else:
        fields.update(trainable_parameters=sum(p.numel() for p in trained.parameters() if p.requires_grad),
                      total_parameters=sum(p.numel() for p in trained.parameters()))
    if config.method == "lora":
        trained.save_pretrained(str(directory / ADAPTER_DIR))  # before merging: merging removes the adapter
        trained.merge_and_unload().save_pretrained(str(directory), safe_serialization=True)
        fields.update(adapter=ADAPTER_DIR, merged=True)
    elif config.method == "ptuning":
        trained.save_pretrained(str(directory / ADAPTER_DIR))
        trained.get_base_model().save_pretrained(str(directory), safe_serialization=True)
        fields.update(adapter=ADAPTER_DIR, merged=False, num_virtual_tokens=config.num_virtual_tokens)
    else:
        trained.save_pretrained(str(directory), safe_serialization=True)
    return fields


def _manifest(config: InstructTrainConfig, base: Path, train_data: InstructData, eval_data: InstructData,
              metrics: dict[str, Any], model: Any, precision: str, logging_steps: int) -> dict[str, Any]:
    resolved: dict[str, Any] = {"learning_rate": config.resolved_learning_rate(), "logging_steps": logging_steps,
                                "eval_steps": config.eval_steps or "epoch", "precision": precision}
    if config.method == "lora":
        resolved["lora_targets"] = config.lora_targets or "all-linear"
    return {
        "format_version": FORMAT_VERSION,
        "task": "instruct",
        "base_model": config.model,
        "base_model_path": str(base),
        "model_type": getattr(model.config, "model_type", None),
        "method": config.method,
        "labels": train_data.answers,
        "max_length": config.max_length,
        "hyperparameters": resolved_hyperparameters(config, resolved),
        "precision": precision,
        "data": {
            "train": train_data.name,
            "eval": eval_data.name,
            "train_examples": len(train_data.conversations),
            "eval_examples": len(eval_data.conversations),
        },
        "metrics": {k: metrics[k] for k in ("eval_loss", "perplexity", "exact_match_before", "exact_match_after")
                    if k in metrics},
        "versions": library_versions() | _more_versions(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": os.uname().nodename,
    }


def _more_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("trl", "datasets"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found
