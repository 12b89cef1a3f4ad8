"""Generations in the feedback store: what a generator answered (logged by the client's opt-in PredictionLog), the
ratings and corrected answers that arrive later, and the live figures they give.

A reviewed answer is one that got a rating, a correction or both. Its right answer is the correction when there is
one, else the answer itself when it was rated good; an answer rated bad without a correction has none. Exact match
compares answers and right answers word for word, ignoring case and punctuation ("Positive." matches "positive").
Prompts are matched by the SHA-256 of their messages (a text prompt is one user message, as the served generator
reads it), so redacted rows (hashes only) still receive their feedback.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOOD = frozenset({"good", "up", "1", "+1", "true", "yes", "correct", "👍"})
BAD = frozenset({"bad", "down", "0", "-1", "false", "no", "wrong", "👎"})
_WORDS = re.compile(r"\w+")
FEEDBACK_FIELDS = ("rating", "correction")


def messages_of(prompt: str | Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """A prompt as chat messages: a text prompt is one user turn, as the served generator reads it."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def prompt_hash(prompt: str | Sequence[Mapping[str, Any]]) -> str:
    canonical = json.dumps(messages_of(prompt), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def answer_words(text: str) -> str:
    """What exact match compares: the words, lower-cased, without punctuation or spacing."""
    return " ".join(_WORDS.findall(text.lower()))


def answer_hash(text: str) -> str:
    return hashlib.sha256(answer_words(text).encode("utf-8")).hexdigest()


def define_table(sa: Any, metadata: Any) -> Any:
    return sa.Table(
        "generations", metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("log_id", sa.String(32), nullable=False, unique=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("adapter", sa.String(64)),
        sa.Column("prompt", sa.Text),  # JSON messages; None when redacted
        sa.Column("prompt_hash", sa.String(64), nullable=False),
        sa.Column("answer", sa.Text),  # None when redacted, or for a correction that answers no logged generation
        sa.Column("answer_hash", sa.String(64)),
        sa.Column("parameters", sa.Text),
        sa.Column("finish_reason", sa.String(16)),
        sa.Column("tokens", sa.Integer),
        sa.Column("generated_at", sa.Float),
        sa.Column("rating", sa.Integer),  # 1 good, 0 bad, None not rated
        sa.Column("correction", sa.Text),
        sa.Column("rated_at", sa.Float),
        sa.Index("generations_lookup", "model", "prompt_hash"),
        sa.Index("generations_rated", "model", "rated_at"),
    )


@dataclass
class AnswerFeedback:
    """One line of a ratings / corrections file."""

    where: str  # file:line
    log_id: str | None
    prompt: list[dict[str, str]] | None
    rating: bool | None
    correction: str | None


@dataclass
class AnswerImportResult:
    matched: int  # feedback given to a logged generation
    added: int  # corrections for prompts with no logged generation, kept as examples
    unmatched: list[str]  # ratings that answer nothing logged (file:line)
    unchanged: int  # the same feedback already recorded


@dataclass
class Reviewed:
    """A generation (or a correction example) with its feedback."""

    model: str
    version: str | None
    adapter: str | None
    prompt: list[dict[str, str]] | None
    answer: str | None
    answer_hash: str | None
    rating: bool | None
    correction: str | None
    rated_at: float

    @property
    def right_answer(self) -> str | None:
        if self.correction is not None:
            return self.correction
        return self.answer if self.rating else None

    @property
    def exact(self) -> bool | None:
        """Whether the answer was right; None for a correction that answers no logged generation."""
        if self.answer_hash is None:
            return None
        if self.correction is not None:
            return answer_hash(self.correction) == self.answer_hash
        return bool(self.rating)


def _rating(value: Any, where: str) -> bool | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (1, 0, -1):
        return value == 1
    text = str(value).strip().lower()
    if text in GOOD:
        return True
    if text in BAD:
        return False
    raise ValueError(f"{where}: rating {value!r} is not a rating; use good/bad (or up/down, 1/0, true/false)")


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: messages is not valid JSON ({error.msg})") from None
    if not isinstance(value, list) or not value or not all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str) and m["content"].strip() for m in value):
        raise ValueError(f"{where}: messages must be a list of {{role: system|user|assistant, content: text}}")
    if value[-1]["role"] == "assistant":
        raise ValueError(f"{where}: messages end with an assistant turn; give the prompt the model answered "
                         "(the answer goes in 'correction')")
    return messages_of(value)


def feedback_from_record(record: Any, where: str) -> AnswerFeedback:
    """One record: `id` (the log id a generation was logged under) or `prompt` / `messages`, and `rating` and/or
    `correction`."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object with id or prompt, and rating and/or correction")
    log_id = record.get("id")
    log_id = str(log_id).strip() if log_id not in (None, "") else None
    prompt: list[dict[str, str]] | None = None
    if record.get("messages") not in (None, ""):
        prompt = _messages(record["messages"], where)
    elif record.get("prompt") not in (None, ""):
        if not isinstance(record["prompt"], str) or not record["prompt"].strip():
            raise ValueError(f"{where}: prompt must be text")
        prompt = messages_of(record["prompt"])
    if log_id is None and prompt is None:
        raise ValueError(f"{where}: give the generation's id (its log id) or its prompt (or messages)")
    rating = _rating(record.get("rating"), where)
    correction = record.get("correction")
    if correction is not None and not isinstance(correction, str):
        raise ValueError(f"{where}: correction must be text (the right answer)")
    correction = correction.strip() if correction and correction.strip() else None
    if rating is None and correction is None:
        raise ValueError(f"{where}: no feedback: give a rating (good/bad), a correction (the right answer) or both")
    return AnswerFeedback(where, log_id, prompt, rating, correction)


def read_answer_feedback(path: Path) -> list[AnswerFeedback]:
    """A ratings / corrections file (JSONL, CSV or TSV), validated line by line; errors name file and line."""
    from tuneship.trainer import DataError, jsonl_records, read_rows

    rows: Iterable[tuple[int, Any]]
    rows = jsonl_records(path) if path.suffix.lower() in (".jsonl", ".ndjson") else read_rows(path)
    items = []
    try:
        for number, record in rows:
            items.append(feedback_from_record(record, f"{path}:{number}"))
    except ValueError as error:
        if isinstance(error, DataError):
            raise
        raise DataError(str(error)) from None
    if not items:
        raise DataError(f"{path}: no feedback records")
    return items


def is_answer_feedback(path: Path) -> bool:
    """Whether a feedback file rates answers (its first record has rating or correction) rather than labels texts."""
    from tuneship.trainer import jsonl_records, read_rows

    rows = jsonl_records(path) if path.suffix.lower() in (".jsonl", ".ndjson") else read_rows(path)
    for _number, record in rows:
        return isinstance(record, dict) and any(name in record for name in FEEDBACK_FIELDS)
    return False


class GenerationLog:
    """The store's generations table: logging, feedback and reading (FeedbackStore.generations)."""

    def __init__(self, sa: Any, engine: Any, table: Any) -> None:
        self.sa, self.engine, self.table = sa, engine, table

    def log(self, record: Any, redact: bool = False) -> str:
        """A finished generation (a client GenerationRecord); returns its log id."""
        log_id = uuid.uuid4().hex
        messages = messages_of(record.prompt)
        row = {"log_id": log_id, "model": record.model, "version": record.version, "adapter": record.adapter,
               "prompt": None if redact else json.dumps(messages, ensure_ascii=False),
               "prompt_hash": prompt_hash(messages), "answer": None if redact else record.answer,
               "answer_hash": answer_hash(record.answer), "parameters": json.dumps(record.parameters, default=str),
               "finish_reason": record.finish_reason, "tokens": record.tokens, "generated_at": time.time()}
        with self.engine.begin() as connection:
            connection.execute(self.table.insert(), [row])
        return log_id

    def import_feedback(self, model: str, items: Sequence[AnswerFeedback],
                        rated_at: float | None = None) -> AnswerImportResult:
        """Give each item's rating / correction to its generation (by log id, else the latest generation of its
        prompt still without feedback, else its latest: new feedback replaces old); a correction for a prompt never
        logged is kept as an example."""
        sa, table = self.sa, self.table
        now = rated_at if rated_at is not None else time.time()
        result = AnswerImportResult(0, 0, [], 0)
        with self.engine.begin() as connection:
            for item in items:
                target = None
                if item.log_id is not None:
                    target = connection.execute(sa.select(table).where(table.c.log_id == item.log_id)).first()
                elif item.prompt is not None:
                    rows = connection.execute(
                        sa.select(table).where(table.c.model == model, table.c.prompt_hash == prompt_hash(
                            item.prompt)).order_by(table.c.generated_at.desc(), table.c.id.desc())).all()
                    answered = [r for r in rows if r.answer_hash is not None]
                    # The latest generation still without feedback; else the latest one (new feedback replaces).
                    target = next((r for r in answered if r.rated_at is None), answered[0] if answered else None)
                    if target is None and any(r.correction == item.correction for r in rows):
                        result.unchanged += 1  # this correction example is already kept
                        continue
                if target is not None:
                    if target.rating == _as_int(item.rating) and target.correction == item.correction:
                        result.unchanged += 1
                        continue
                    connection.execute(table.update().where(table.c.id == target.id).values(
                        rating=_as_int(item.rating), correction=item.correction, rated_at=now))
                    result.matched += 1
                elif item.correction is not None and item.prompt is not None:
                    connection.execute(table.insert(), [{
                        "log_id": uuid.uuid4().hex, "model": model, "prompt": json.dumps(item.prompt,
                                                                                          ensure_ascii=False),
                        "prompt_hash": prompt_hash(item.prompt), "rating": _as_int(item.rating),
                        "correction": item.correction, "rated_at": now}])
                    result.added += 1
                else:
                    result.unmatched.append(item.where)
        return result

    def reviewed(self, model: str | None = None, since: float | None = None) -> list[Reviewed]:
        sa, table = self.sa, self.table
        query = sa.select(table).where(table.c.rated_at.is_not(None)).order_by(table.c.rated_at, table.c.id)
        if model is not None:
            query = query.where(table.c.model == model)
        if since is not None:
            query = query.where(table.c.rated_at >= since)
        with self.engine.connect() as connection:
            return [Reviewed(r.model, r.version, r.adapter, json.loads(r.prompt) if r.prompt else None, r.answer,
                             r.answer_hash, None if r.rating is None else bool(r.rating), r.correction, r.rated_at)
                    for r in connection.execute(query)]

    def counts(self) -> list[dict[str, Any]]:
        """Per model and version: generations logged and how many were reviewed."""
        sa, table = self.sa, self.table
        query = (sa.select(table.c.model, table.c.version, sa.func.count(table.c.answer_hash),
                           sa.func.count(table.c.rated_at))
                 .group_by(table.c.model, table.c.version).order_by(table.c.model, table.c.version))
        with self.engine.connect() as connection:
            return [{"model": m, "version": v, "generations": g, "reviewed": n}
                    for m, v, g, n in connection.execute(query)]


def _as_int(rating: bool | None) -> int | None:
    return None if rating is None else int(rating)


def answer_quality(rows: Iterable[Reviewed]) -> dict[tuple[str, str, str], dict[str, float]]:
    """Per (model, version, adapter) over reviewed generations: the share rated good, exact match, and counts."""
    grouped: dict[tuple[str, str, str], list[Reviewed]] = {}
    for row in rows:
        if row.answer_hash is not None:
            grouped.setdefault((row.model, row.version or "", row.adapter or ""), []).append(row)
    figures: dict[tuple[str, str, str], dict[str, float]] = {}
    for key, items in grouped.items():
        rated = [r.rating for r in items if r.rating is not None]
        exact = [r.exact for r in items if r.exact is not None]
        figures[key] = {"reviewed": float(len(items)), "rated": float(len(rated)),
                        "corrected": float(sum(r.correction is not None for r in items)),
                        "good_share": sum(rated) / len(rated) if rated else float("nan"),
                        "exact_match": sum(bool(e) for e in exact) / len(exact) if exact else float("nan")}
    return figures
