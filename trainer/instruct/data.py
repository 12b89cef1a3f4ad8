"""Instruction data: JSONL in Alpaca form or chat `messages`, validated line by line, and the built-in sets.

Every conversation becomes a list of chat messages whose last one is the assistant's answer: the answer is
what the model learns (the loss is on it alone), the messages before it are the prompt, formatted by the
model's own chat template.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneship.trainer.errors import DataError
from tuneship.trainer.tables import jsonl_records

if TYPE_CHECKING:
    from tuneship.trainer.instruct.config import InstructTrainConfig

ROLES = ("system", "user", "assistant")
Message = dict[str, str]


@dataclass
class Conversation:
    messages: list[Message]
    source: str  # "file:line", for messages

    @property
    def prompt(self) -> list[Message]:
        return self.messages[:-1]

    @property
    def answer(self) -> str:
        return self.messages[-1]["content"]


@dataclass
class InstructData:
    name: str
    conversations: list[Conversation]
    answers: list[str] = field(default_factory=list)
    """The closed set of answers (a classifier that answers in words), or empty for free text."""
    notes: list[str] = field(default_factory=list)

    def head(self, limit: int | None, seed: int) -> InstructData:
        if limit is None or limit >= len(self.conversations):
            return self
        rows = list(self.conversations)
        random.Random(seed).shuffle(rows)
        return InstructData(self.name, rows[:limit], self.answers, list(self.notes))


def _message(value: Any, where: str, index: int) -> Message:
    if not isinstance(value, dict):
        raise DataError(f"{where}: messages[{index}] must be an object with 'role' and 'content'")
    role, content = value.get("role"), value.get("content")
    if role not in ROLES:
        raise DataError(f"{where}: messages[{index}].role is {role!r}; use one of {', '.join(ROLES)}")
    if not isinstance(content, str) or not content.strip():
        raise DataError(f"{where}: messages[{index}].content is empty (every message needs text)")
    return {"role": role, "content": content}


def conversation_from_record(record: Any, where: str) -> Conversation:
    """One JSONL record: {"messages": [...]} or Alpaca {"instruction", "input"?, "output"}."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        raw = record["messages"]
        if not isinstance(raw, list) or len(raw) < 2:
            raise DataError(f"{where}: 'messages' must be a list of at least a user and an assistant message")
        messages = [_message(m, where, i) for i, m in enumerate(raw)]
        if messages[-1]["role"] != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's answer (the text to learn), "
                            f"got role {messages[-1]['role']!r}")
        if not any(m["role"] == "user" for m in messages[:-1]):
            raise DataError(f"{where}: no user message before the answer")
        return Conversation(messages, where)
    if "instruction" in record or "output" in record:
        instruction, output = record.get("instruction"), record.get("output")
        extra = record.get("input") or ""
        if not isinstance(instruction, str) or not instruction.strip():
            raise DataError(f"{where}: field 'instruction' is missing or empty")
        if not isinstance(output, str) or not output.strip():
            raise DataError(f"{where}: field 'output' is missing or empty (every example needs an answer)")
        if not isinstance(extra, str):
            raise DataError(f"{where}: field 'input' must be a string")
        prompt = instruction.strip() + (f"\n\n{extra.strip()}" if extra.strip() else "")
        return Conversation([{"role": "user", "content": prompt}, {"role": "assistant", "content": output.strip()}],
                            where)
    raise DataError(f"{where}: expected 'messages' (chat) or 'instruction' and 'output' (Alpaca); "
                    f"the record has {', '.join(sorted(record)) or 'no fields'}")


def load_instruct_file(path: Path, encoding: str = "utf-8") -> InstructData:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise DataError(f"{path}: instruction data must be JSONL (one conversation per line), not {path.suffix!r}")
    conversations = []
    seen: set[str] = set()
    duplicates = 0
    for number, record in jsonl_records(path, encoding):
        conversation = conversation_from_record(record, f"{path}:{number}")
        key = json.dumps(conversation.messages, sort_keys=True)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        conversations.append(conversation)
    if not conversations:
        raise DataError(f"{path}: no conversations")
    data = InstructData(str(path), conversations, answers=closed_answer_set(conversations))
    if duplicates:
        data.notes.append(f"{path}: {duplicates} duplicated conversations dropped")
    return data


def closed_answer_set(conversations: list[Conversation], limit: int = 20) -> list[str]:
    """The answers, when they come from a small set of short ones (a classifier in words), else []."""
    answers = Counter(c.answer.strip().lower() for c in conversations)
    if len(answers) > limit or any(len(a.split()) > 3 for a in answers):
        return []
    return sorted(answers)


def split(data: InstructData, eval_fraction: float, seed: int) -> tuple[InstructData, InstructData]:
    if not 0.0 < eval_fraction < 1.0:
        raise DataError(f"eval fraction must be between 0 and 1, got {eval_fraction}")
    rows = list(data.conversations)
    random.Random(seed).shuffle(rows)
    cut = max(1, round(len(rows) * eval_fraction))
    if len(rows) - cut < 1:
        raise DataError(f"{data.name}: {len(rows)} conversation(s) are too few to hold some out for evaluation")
    return (InstructData(f"{data.name} (train split)", rows[cut:], data.answers, data.notes),
            InstructData(f"{data.name} (eval split)", rows[:cut], data.answers))


# -- built-in sets -------------------------------------------------------------------------------------

SENTIMENT_PROMPT = "Is this {what} positive or negative? Answer with one word.\n\n{text}"
TWEET_PROMPT = "Is this tweet positive, negative or neutral? Answer with one word.\n\n{text}"


def _from_labelled(name: str, loader: Callable[[], Any], prompt: str, rename: dict[str, str]) -> InstructData:
    labelled = loader()
    conversations = [
        Conversation([{"role": "user", "content": prompt.format(what="review", text=e.text)},
                      {"role": "assistant", "content": rename.get(e.label, e.label)}], e.source)
        for e in labelled.examples
    ]
    return InstructData(name, conversations, answers=sorted({rename.get(x, x) for x in labelled.label_counts()}))


def rotten_tomatoes_instructions() -> InstructData:
    """The Rotten Tomatoes snippets as 'positive or negative?' questions answered in one word."""
    from tuneship.trainer.builtin_data import rotten_tomatoes

    return _from_labelled("rotten-tomatoes", rotten_tomatoes, SENTIMENT_PROMPT,
                          {"fresh": "positive", "rotten": "negative"})


def tweet_instructions() -> InstructData:
    from tuneship.trainer.builtin_data import tweets

    return _from_labelled("tweets", tweets, TWEET_PROMPT, {})


def chatterbot_conversations() -> InstructData:
    """chatterbot-corpus's English conversations: each exchange becomes user/assistant turns."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the chatterbot data set needs its package: pip install --no-deps chatterbot-corpus==1.3.3")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "english"
    conversations = []
    for path in sorted(folder.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for index, turns in enumerate(document.get("conversations") or []):
            texts = [str(t).strip() for t in turns if str(t).strip()]
            if len(texts) < 2:
                continue
            if len(texts) % 2:  # end on an answer
                texts = texts[:-1]
            roles = ["user", "assistant"] * (len(texts) // 2)
            conversations.append(Conversation([{"role": r, "content": t} for r, t in zip(roles, texts, strict=True)],
                                              f"{path}:{index}"))
    return InstructData("chatterbot", conversations)


BUILTIN_INSTRUCTIONS: dict[str, Callable[[], InstructData]] = {
    "rotten-tomatoes": rotten_tomatoes_instructions,
    "tweets": tweet_instructions,
    "chatterbot": chatterbot_conversations,
}


def load_instructions(name: str, encoding: str = "utf-8") -> InstructData:
    if name in BUILTIN_INSTRUCTIONS:
        return BUILTIN_INSTRUCTIONS[name]()
    path = Path(name)
    if not path.suffix:
        raise DataError(f"unknown instruction data set {name!r}; built-in sets: {', '.join(BUILTIN_INSTRUCTIONS)}, "
                        "or a .jsonl file")
    return load_instruct_file(path, encoding)


# The public names other stages use (tuneship.trainer's lazy names), beside the short names used here.
split_instructions = split


def prepare_instructions(config: InstructTrainConfig) -> tuple[InstructData, InstructData]:
    """The training and eval conversations a config names (the eval file, or a seeded split)."""
    data = load_instructions(str(config.data), config.encoding)
    if config.eval_file:
        train_data, eval_data = data, load_instructions(config.eval_file, config.encoding)
    else:
        train_data, eval_data = split(data, config.eval_fraction, config.seed)
    train_data = train_data.head(config.max_train_samples, config.seed)
    eval_data = eval_data.head(config.max_eval_samples, config.seed)
    if config.system_prompt:
        for conversation in train_data.conversations + eval_data.conversations:
            if conversation.messages[0]["role"] != "system":
                conversation.messages.insert(0, {"role": "system", "content": config.system_prompt})
    return train_data, eval_data


def write_conversations(path: Path, data: InstructData) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for conversation in data.conversations:
            handle.write(json.dumps({"messages": conversation.messages}, ensure_ascii=False) + "\n")


def read_conversations(path: Path, limit: int | None = None) -> list[Conversation]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.strip():
            rows.append(conversation_from_record(json.loads(line), f"{path}:{number}"))
            if limit is not None and len(rows) >= limit:
                break
    return rows
