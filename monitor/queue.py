"""`tuneship feedback queue`: which served predictions people should label next.

A labelling budget spent on predictions the model was sure of teaches it little. The queue takes, in this order:
a seeded random share of every open prediction (its accuracy is an unbiased estimate of the served model's), the
data check's suspects (training rows whose label is probably wrong), the served texts least like the training data
(where traffic drifted, by TF-IDF similarity to `--reference`), and the least confident predictions for the rest.
Each pick says why it was picked; the queue goes out as Label Studio tasks (the model's answer as a
pre-annotation) and as CSV."""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tuneship.monitor.labelstudio import label_config, tasks
from tuneship.monitor.store import FeedbackStore, Served

REASONS = ("random", "suspect", "novel", "least_confident")


class QueueError(ValueError):
    """The queue cannot be made as asked; the message names what is wrong."""


@dataclass
class QueueOptions:
    model: str
    output: Path
    size: int = 200
    random_share: float = 0.2
    novel_share: float = 0.2
    suspect_share: float = 0.2
    reference: str | None = None
    suspects: Path | None = None
    since: float | None = None
    seed: int = 42


@dataclass
class Pick:
    """One text to label, why it was picked, and what the model answered (None for a training row)."""

    text: str
    reason: str
    source: str  # "prediction:<id>" for a served one, "file:line" for a training row
    predicted: str | None = None
    confidence: float | None = None
    version: str | None = None
    given: str | None = None  # a training row's label as it stands
    scores: dict[str, float] = field(default_factory=dict)


def _served(row: Served, reason: str) -> Pick:
    return Pick(text=row.text, reason=reason, source=f"prediction:{row.id}", predicted=row.predicted_label,
                confidence=round(row.confidence, 4), version=row.version, scores=row.probabilities)


def read_suspects(path: Path) -> list[Pick]:
    """The data check's label issues and conflicts (its issues.csv), least trustworthy first."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise QueueError(f"--suspects {path}: {error.strerror or error}") from None
    if rows and not {"kind", "file", "line", "text", "given"} <= set(rows[0]):
        raise QueueError(f"--suspects {path}: not a data check's issues.csv (it needs kind, file, line, text, given)")
    kept = [r for r in rows if r["kind"] in ("label_issue", "conflict")]
    kept.sort(key=lambda r: float(r.get("score") or 0.0))
    return [Pick(text=r["text"], reason="suspect", source=f"{r['file']}:{r['line']}", given=r["given"],
                 predicted=r.get("suggested") or None) for r in kept]


def novelty(texts: Sequence[str], reference: Sequence[str]) -> list[float]:
    """Each text's largest TF-IDF cosine similarity to any reference text, negated: higher is more novel."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit([*reference, *texts])
    known = vectorizer.transform(reference)
    found = vectorizer.transform(texts)
    best: list[float] = []
    for start in range(0, found.shape[0], 512):  # a block of served texts at a time: bounded memory
        block = (found[start:start + 512] @ known.T).max(axis=1).toarray().ravel()
        best.extend(-float(v) for v in block)
    return best


def _reference_texts(reference: str) -> list[str]:
    from tuneship.trainer import BUILTIN_DATASETS, DataError, load_builtin, load_file

    try:
        data = load_builtin(reference) if reference in BUILTIN_DATASETS else load_file(Path(reference))
    except DataError as error:
        raise QueueError(f"--reference: {error}") from None
    return list(data.texts)


def pick(options: QueueOptions, open_rows: Sequence[Served], suspects: Sequence[Pick] = (),
         reference: Sequence[str] = ()) -> list[Pick]:
    """The queue, by the policy above: at most `size` picks, no text twice."""
    rng = random.Random(options.seed)
    left = list(open_rows)
    picks: list[Pick] = []
    seen: set[str] = set()

    def take(rows: Sequence[Served], count: int, reason: str) -> None:
        for row in rows:
            if count <= 0:
                return
            if row.text not in seen:
                seen.add(row.text)
                picks.append(_served(row, reason))
                count -= 1

    size = options.size
    take(rng.sample(left, min(len(left), round(size * options.random_share))), size, "random")
    for suspect in suspects[:round(size * options.suspect_share)]:
        if suspect.text not in seen and len(picks) < size:
            seen.add(suspect.text)
            picks.append(suspect)
    left = [row for row in left if row.text not in seen]
    if reference and left:
        order = sorted(zip(novelty([r.text for r in left], reference), range(len(left)), strict=True), reverse=True)
        take([left[i] for _, i in order], min(size - len(picks), round(size * options.novel_share)), "novel")
        left = [row for row in left if row.text not in seen]
    take(sorted(left, key=lambda r: (r.confidence, -r.predicted_at)), size - len(picks), "least_confident")
    return picks


@dataclass
class Queue:
    picks: list[Pick]
    labels: list[str]
    queue_id: str
    written: list[Path]

    def counts(self) -> dict[str, int]:
        return {reason: sum(p.reason == reason for p in self.picks) for reason in REASONS}


def _atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def make_queue(options: QueueOptions, store: FeedbackStore) -> Queue:
    labels = store.labels_of(options.model)
    if not labels:
        raise QueueError(f"--model {options.model}: no prediction log in {store.url} (the client logs "
                         "them: TextClassifier(..., log=PredictionLog(store)))")
    open_rows = store.open_predictions(options.model, since=options.since)
    if not open_rows:
        raise QueueError(f"--model {options.model}: every logged prediction with its text is labelled already "
                         "(or only hashes were logged: --redact keeps no text to label)")
    suspects = read_suspects(options.suspects) if options.suspects else []
    reference = _reference_texts(options.reference) if options.reference else []
    picks = pick(options, open_rows, suspects, reference)
    queue_id = f"{options.model}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    options.output.mkdir(parents=True, exist_ok=True)
    written = [options.output / "tasks.json", options.output / "label_config.xml", options.output / "queue.csv"]
    _atomic(written[0], json.dumps(tasks(picks, options.model, queue_id, labels), indent=1, ensure_ascii=False)
            + "\n")
    _atomic(written[1], label_config(labels))
    buffer = io.StringIO()
    columns = ["text", "reason", "source", "predicted", "confidence", "version", "given"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(asdict(p) for p in picks)
    _atomic(written[2], buffer.getvalue())
    return Queue(picks, labels, queue_id, written)


def describe(queue: Queue) -> str:
    counts = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in queue.counts().items() if n)
    return f"{len(queue.picks)} texts to label ({counts}); queue {queue.queue_id}"
