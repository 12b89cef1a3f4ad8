"""The feedback store: served predictions and the true labels that arrive later, in one table.

SQLAlchemy Core over any URL it knows: `sqlite:///feedback.db` by default (one file, no server), or a PostgreSQL
URL where several replicas log to one place (install a driver, e.g. `psycopg[binary]`). One code path for both.

A row is one text the model answered (model, version, the text or only its hash, predicted label, probabilities,
time) or one labelled example imported without a prediction; `true_label` is filled when feedback arrives. Texts
are matched by SHA-256, so redacted rows (hash only) still receive their labels.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.exporter import macro_f1
from tuneship.monitor.generations import GenerationLog, define_table

DEFAULT_URL = "sqlite:///feedback.db"


class StoreError(ValueError):
    """The store cannot be opened or used; the message says which URL and why."""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Labelled:
    """One labelled row, with the prediction it answers (when there was one)."""

    model: str
    version: str | None
    text: str | None
    text_hash: str
    true_label: str
    predicted_label: str | None
    labelled_at: float


@dataclass
class Served:
    """A logged prediction waiting for its label."""

    id: int
    version: str | None
    text: str
    predicted_label: str
    probabilities: dict[str, float]
    predicted_at: float

    @property
    def confidence(self) -> float:
        return max(self.probabilities.values(), default=0.0)


@dataclass
class ImportResult:
    matched: int  # labels given to predictions already logged
    added: int  # labelled examples with no logged prediction
    unchanged: int  # rows already recorded with this label


def _url(location: str) -> str:
    """A URL, or a bare path taken as a SQLite file."""
    return location if "://" in location else f"sqlite:///{Path(location).resolve()}"


class FeedbackStore:
    def __init__(self, location: str = DEFAULT_URL) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:
            raise StoreError("the feedback store needs SQLAlchemy: pip install 'tuneship[monitor]'") from None
        self.sa = sa
        self.url = _url(location)
        metadata = sa.MetaData()
        self.table = sa.Table(
            "feedback", metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("model", sa.String(200), nullable=False),
            sa.Column("version", sa.String(32)),
            sa.Column("text", sa.Text),
            sa.Column("text_hash", sa.String(64), nullable=False),
            sa.Column("predicted_label", sa.String(200)),
            sa.Column("probabilities", sa.Text),
            sa.Column("true_label", sa.String(200)),
            sa.Column("predicted_at", sa.Float),
            sa.Column("labelled_at", sa.Float),
            sa.Index("feedback_lookup", "model", "text_hash"),
            sa.Index("feedback_labelled", "model", "labelled_at"),
        )
        generations_table = define_table(sa, metadata)
        try:
            self.engine = sa.create_engine(self.url, future=True)
            if self.url.startswith("sqlite"):
                # Several processes (clients, the exporter, imports) share the file: wait for locks, don't fail.
                sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
        except (sa.exc.SQLAlchemyError, ImportError) as error:
            raise StoreError(f"cannot open the feedback store {self.url}: {str(error).splitlines()[0]}") from None
        # Generators' answers, with their ratings and corrections (tuneship.monitor.generations).
        self.generations = GenerationLog(sa, self.engine, generations_table)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------------------

    def log_predictions(self, model: str, version: str | None, texts: Sequence[str], labels: Sequence[str],
                        probabilities: Sequence[dict[str, float]], redact: bool = False) -> int:
        """Record answered texts (only their hashes with `redact`); returns the number of rows written."""
        now = time.time()
        rows = [{"model": model, "version": version, "text": None if redact else text, "text_hash": text_hash(text),
                 "predicted_label": label, "probabilities": json.dumps(scores), "predicted_at": now}
                for text, label, scores in zip(texts, labels, probabilities, strict=True)]
        if rows:
            with self.engine.begin() as connection:
                connection.execute(self.table.insert(), rows)
        return len(rows)

    def import_labels(self, model: str, texts: Sequence[str], labels: Sequence[str],
                      labelled_at: float | None = None) -> ImportResult:
        """Give true labels to the latest unlabelled prediction of each text; keep the others as new examples."""
        sa, table = self.sa, self.table
        now = labelled_at if labelled_at is not None else time.time()
        result = ImportResult(0, 0, 0)
        with self.engine.begin() as connection:
            for text, label in zip(texts, labels, strict=True):
                digest = text_hash(text)
                rows = connection.execute(
                    sa.select(table.c.id, table.c.true_label, table.c.predicted_label)
                    .where(table.c.model == model, table.c.text_hash == digest)
                    .order_by(table.c.predicted_at.desc())).all()
                open_rows = [r.id for r in rows if r.true_label is None and r.predicted_label is not None]
                if open_rows:
                    connection.execute(table.update().where(table.c.id == open_rows[0])
                                       .values(true_label=label, labelled_at=now))
                    result.matched += 1
                elif any(r.true_label == label for r in rows):
                    result.unchanged += 1
                else:
                    connection.execute(table.insert(), [{"model": model, "text": text, "text_hash": digest,
                                                        "true_label": label, "labelled_at": now}])
                    result.added += 1
        return result

    # --- reading ---------------------------------------------------------------------------------------------

    def labelled(self, model: str | None = None, since: float | None = None,
                 predicted_only: bool = False) -> list[Labelled]:
        sa, table = self.sa, self.table
        query = sa.select(table).where(table.c.true_label.is_not(None)).order_by(table.c.labelled_at, table.c.id)
        if model is not None:
            query = query.where(table.c.model == model)
        if since is not None:
            query = query.where(table.c.labelled_at >= since)
        if predicted_only:
            query = query.where(table.c.predicted_label.is_not(None))
        with self.engine.connect() as connection:
            return [Labelled(r.model, r.version, r.text, r.text_hash, r.true_label, r.predicted_label, r.labelled_at)
                    for r in connection.execute(query)]

    def open_predictions(self, model: str, since: float | None = None) -> list[Served]:
        """Logged predictions that kept their text and have no label yet, newest first, one per text."""
        sa, table = self.sa, self.table
        query = (sa.select(table.c.id, table.c.version, table.c.text, table.c.text_hash, table.c.predicted_label,
                           table.c.probabilities, table.c.predicted_at)
                 .where(table.c.model == model, table.c.text.is_not(None), table.c.predicted_label.is_not(None),
                        table.c.true_label.is_(None))
                 .order_by(table.c.predicted_at.desc(), table.c.id.desc()))
        if since is not None:
            query = query.where(table.c.predicted_at >= since)
        seen: set[str] = set()
        found = []
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                if row.text_hash in seen:
                    continue
                seen.add(row.text_hash)
                found.append(Served(row.id, row.version, row.text, row.predicted_label,
                                    json.loads(row.probabilities or "{}"), row.predicted_at))
        return found

    def labels_of(self, model: str) -> list[str]:
        """The classes a model answers with, as its logged predictions name them (their probabilities' keys)."""
        sa, table = self.sa, self.table
        query = (sa.select(table.c.probabilities).where(table.c.model == model, table.c.probabilities.is_not(None))
                 .order_by(table.c.id.desc()).limit(1))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return sorted(json.loads(row.probabilities)) if row is not None else []

    def recent_answers(self, model: str, limit: int) -> list[tuple[str, str]]:
        """The latest logged answers that kept their text: (text, predicted label), newest first."""
        sa, table = self.sa, self.table
        query = (sa.select(table.c.text, table.c.predicted_label)
                 .where(table.c.model == model, table.c.text.is_not(None), table.c.predicted_label.is_not(None))
                 .order_by(table.c.predicted_at.desc(), table.c.id.desc()).limit(limit))
        with self.engine.connect() as connection:
            return [(text, label) for text, label in connection.execute(query)]

    def counts(self) -> list[dict[str, Any]]:
        """Per model and version: predictions logged and how many have labels."""
        sa, table = self.sa, self.table
        query = (sa.select(table.c.model, table.c.version, sa.func.count(table.c.predicted_label),
                           sa.func.count(table.c.true_label))
                 .group_by(table.c.model, table.c.version).order_by(table.c.model, table.c.version))
        with self.engine.connect() as connection:
            return [{"model": m, "version": v, "predictions": p, "labelled": n}
                    for m, v, p, n in connection.execute(query)]


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class PredictionLog:
    """The client's opt-in sink: logs a sampled share of answered texts (a classifier's `log=`) and of finished
    generations (a generator's `log=`) to a feedback store; `redact` keeps only hashes of texts, prompts and
    answers."""

    def __init__(self, store: FeedbackStore | str, sample_rate: float = 1.0, redact: bool = False,
                 seed: int | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate}")
        self.store = store if isinstance(store, FeedbackStore) else FeedbackStore(store)
        self.sample_rate, self.redact = sample_rate, redact
        self.random = random.Random(seed)

    def record(self, model: str, version: str | None, texts: Sequence[str], labels: Sequence[str],
               probabilities: Sequence[dict[str, float]]) -> None:
        chosen = [i for i in range(len(texts)) if self.sample_rate >= 1.0 or self.random.random() < self.sample_rate]
        if chosen:
            self.store.log_predictions(model, version, [texts[i] for i in chosen], [labels[i] for i in chosen],
                                       [probabilities[i] for i in chosen], self.redact)

    def record_generation(self, record: Any) -> str | None:
        """A client GenerationRecord, if sampled; its log id (what ratings and corrections name)."""
        if self.sample_rate < 1.0 and self.random.random() >= self.sample_rate:
            return None
        return self.store.generations.log(record, self.redact)


def window_quality(rows: Iterable[Labelled]) -> dict[tuple[str, str], dict[str, float]]:
    """Accuracy and macro-F1 per (model, version) over labelled predictions."""
    grouped: dict[tuple[str, str], list[Labelled]] = {}
    for row in rows:
        if row.predicted_label is not None:
            grouped.setdefault((row.model, row.version or ""), []).append(row)
    figures = {}
    for key, items in grouped.items():
        truth = [r.true_label for r in items]
        predicted = [r.predicted_label or "" for r in items]
        index = {label: i for i, label in enumerate(sorted(set(truth) | set(predicted)))}
        true_ids, predicted_ids = [index[t] for t in truth], [index[p] for p in predicted]
        figures[key] = {"accuracy": sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(items),
                        "macro_f1": macro_f1(true_ids, predicted_ids, len(index)), "labelled": float(len(items))}
    return figures
