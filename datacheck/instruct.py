"""`tuneship data check --task instruct`: conversations as the instruct trainer reads them, every problem reported
instead of the first one stopping the run.

A record the trainer would refuse (no answer, an empty message, an unknown role) is `invalid`; a conversation
whose turns break the chat template's shape (a system message after the first, two turns of one role in a row)
or whose text holds the template's control markers is `template`; one longer than the training's token budget
loses its answer's end (`truncated`). Prompts are the texts of the duplicate, conflict and leak findings (the
answer is their label); when the answers come from a small closed set (a classifier in words), label issues are
found as for text classification, the last user message being the text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuneship.datacheck.duplicates import leaks, within
from tuneship.datacheck.findings import Finding
from tuneship.datacheck.options import CheckOptions, DataCheckError
from tuneship.datacheck.report import CheckReport, class_table
from tuneship.datacheck.rows import Row

ROLE_ORDER = {"system": 0, "user": 1, "assistant": 2}


@dataclass
class Read:
    rows: list[Row]
    conversations: list[list[dict[str, str]]]
    findings: list[Finding]


def _prompt_text(messages: Sequence[dict[str, str]]) -> str:
    return "\n".join(m["content"].strip() for m in messages[:-1] if m["role"] != "system")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read(data: str, encoding: str, split: str) -> Read:
    """Every record of a JSONL file (or a built-in instruct set): valid ones as rows, the rest as findings."""
    from tuneship.trainer import DataError
    from tuneship.trainer.instruct.data import BUILTIN_INSTRUCTIONS, conversation_from_record, load_instructions
    from tuneship.trainer.tables import jsonl_records

    rows: list[Row] = []
    conversations: list[list[dict[str, str]]] = []
    findings: list[Finding] = []
    try:
        if data in BUILTIN_INSTRUCTIONS:
            records: Any = [(c.source, c) for c in load_instructions(data).conversations]
        else:
            path = Path(data)
            if not path.is_file():
                raise DataCheckError(f"--data {data}: no such file")
            if path.suffix.lower() not in (".jsonl", ".ndjson"):
                raise DataCheckError(f"{path}: instruction data must be JSONL (one conversation per line)")
            records = [(f"{path}:{number}", record) for number, record in jsonl_records(path, encoding)]
    except DataError as error:
        raise DataCheckError(str(error)) from None
    for where, record in records:
        file, _, line = where.rpartition(":")
        try:
            conversation = record if hasattr(record, "messages") else conversation_from_record(record, where)
        except DataError as error:
            reason = str(error).removeprefix(f"{where}: ")
            findings.append(Finding("invalid", file, int(line), _short(json.dumps(record, ensure_ascii=False)), "",
                                    suggested=reason))
            continue
        messages = conversation.messages
        rows.append(Row(_prompt_text(messages), messages[-1]["content"].strip(), file, int(line), split))
        conversations.append(messages)
    return Read(rows, conversations, findings)


def template_findings(rows: Sequence[Row], conversations: Sequence[Sequence[dict[str, str]]],
                      markers: Sequence[str]) -> list[Finding]:
    found = []
    for row, messages in zip(rows, conversations, strict=True):
        problems = []
        for index, message in enumerate(messages):
            if message["role"] == "system" and index > 0:
                problems.append(f"messages[{index}] is a system message after the first turn")
            if index and message["role"] == messages[index - 1]["role"] and message["role"] != "system":
                problems.append(f"messages[{index}] is a second {message['role']} turn in a row")
            held = [m for m in markers if m in message["content"]]
            if held:
                problems.append(f"messages[{index}] holds the chat template's marker {held[0]!r}")
        if problems:
            found.append(Finding("template", row.file, row.line, _short(row.text), _short(row.label),
                                 suggested="; ".join(problems)))
    return found


def truncated(rows: Sequence[Row], conversations: Sequence[Sequence[dict[str, str]]], tokenizer: Any,
              budget: int) -> list[Finding]:
    found = []
    for row, messages in zip(rows, conversations, strict=True):
        rendered = tokenizer.apply_chat_template(list(messages), tokenize=False)
        count = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
        if count > budget:
            found.append(Finding("truncated", row.file, row.line, _short(row.text), _short(row.label),
                                 suggested=f"{count} tokens, over the training's {budget}: the answer is cut",
                                 score=float(count)))
    return found


def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from tuneship.trainer import DataError, TrainingError
    from tuneship.trainer.instruct.base_model import resolve_causal_lm

    try:
        return AutoTokenizer.from_pretrained(str(resolve_causal_lm(name)))
    except (DataError, TrainingError) as error:
        raise DataCheckError(f"--chat-model {name}: {error}") from None
    except OSError as error:
        raise DataCheckError(f"--chat-model {name}: no tokenizer there ({str(error).splitlines()[0]})") from None


def check_instruct(options: CheckOptions) -> CheckReport:
    from tuneship.datacheck.embeddings import embed
    from tuneship.datacheck.labels import check_folds, label_scores
    from tuneship.datacheck.outliers import outliers
    from tuneship.trainer.config import TASK_DEFAULTS
    from tuneship.trainer.instruct.data import Conversation, closed_answer_set

    training = options.training
    data = str(training.get("data") or TASK_DEFAULTS["instruct"].data)
    if options.fine_tune:
        raise DataCheckError("--fine-tune fine-tunes an encoder classifier per fold: text classification only")
    if options.fix and not Path(data).is_file():
        raise DataCheckError(f"--fix writes a cleaned copy of a file; {data} is built-in data, not a file (export "
                             "it as JSONL first)")
    encoding = str(training.get("encoding", "utf-8"))
    train = read(data, encoding, "train")
    evaluation = read(str(training["eval_file"]), encoding, "eval") if training.get("eval_file") else Read([], [], [])
    if not train.rows:
        raise DataCheckError(f"--data {data}: no valid conversations (the first problem: "
                             f"{train.findings[0].suggested if train.findings else 'the file is empty'})")
    tokenizer = _tokenizer(options.chat_model or TASK_DEFAULTS["instruct"].model)
    markers = sorted({str(t) for t in tokenizer.all_special_tokens if len(str(t)) > 2})
    budget = options.conversation_tokens or int(TASK_DEFAULTS["instruct"].max_length)
    print(f"checking {len(train.rows) + len(train.findings)} conversations of {data}", flush=True)
    findings = [*train.findings, *evaluation.findings]
    findings += template_findings(train.rows, train.conversations, markers)
    findings += truncated(train.rows, train.conversations, tokenizer, budget)
    vectors = embed([r.text for r in train.rows + evaluation.rows], options.encoder, options.max_length)
    train_vectors, eval_vectors = vectors[:len(train.rows)], vectors[len(train.rows):]
    findings += within(train.rows, train_vectors, options.near_threshold)
    if evaluation.rows:
        findings += leaks(train.rows, evaluation.rows, train_vectors, eval_vectors, options.near_threshold)
    answers = closed_answer_set([Conversation([{"role": "assistant", "content": r.label}], r.where)
                                 for r in train.rows])
    accuracy, quality, classes = float("nan"), {}, {}
    repeated = {f.where for f in findings if f.kind in ("duplicate", "near_duplicate", "conflict")}
    unique = [i for i, row in enumerate(train.rows) if row.where not in repeated]
    rows = [train.rows[i] for i in unique]
    if answers:  # a classifier in words: its answers are labels, and label issues are found as for text
        labels = sorted({r.label for r in rows})
        check_folds([r.label for r in rows], options.folds)
        last_user = [_last_user(train.conversations[i]) for i in unique]
        scores = label_scores(train_vectors[unique], last_user, [r.label for r in rows], labels, options.folds,
                              options.seed)
        for i in scores.flagged:
            row = rows[i]
            suggested = labels[int(np.argmax(scores.probabilities[i]))]
            findings.append(Finding("label_issue", row.file, row.line, _short(row.text), row.label,
                                    suggested=suggested if suggested != row.label else "",
                                    score=round(float(scores.quality[i]), 4)))
        accuracy = scores.out_of_fold_accuracy
        quality = {row.where: float(q) for row, q in zip(rows, scores.quality, strict=True)}
        classes = class_table(train.rows, findings)
    findings += outliers(rows, train_vectors[unique], options.outlier_share)
    return CheckReport(findings=findings, classes=classes, train_rows=len(train.rows) + len(train.findings),
                       eval_rows=len(evaluation.rows), out_of_fold_accuracy=accuracy, flagged_quality=None,
                       cleaned=[], label_quality=quality)


def _last_user(messages: Sequence[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages[:-1]) if m["role"] == "user")
