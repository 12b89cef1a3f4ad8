"""The rows of a labelled file as the check sees them: every row, duplicates included, with its file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuneship.datacheck.options import DataCheckError


@dataclass(frozen=True)
class Row:
    text: str
    label: str
    file: str
    line: int
    split: str  # "train" or "eval"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def read(data: str, text_column: str, label_column: str, encoding: str, split: str) -> list[Row]:
    """Every row of `data` (a file the trainer reads, or a built-in set), validated as the trainer validates it
    (a missing column or an empty field is an error naming its line)."""
    from tuneship.trainer import DataError
    from tuneship.trainer.builtin_data import BUILTIN_DATASETS, load_builtin
    from tuneship.trainer.tables import read_rows
    from tuneship.trainer.text.data import load_file

    try:
        if data in BUILTIN_DATASETS:
            rows = []
            for example in load_builtin(data).examples:  # sources are "file:line"
                file, _, line = example.source.rpartition(":")
                rows.append(Row(example.text, example.label, file, int(line), split))
            return rows
        path = Path(data)
        import warnings

        with warnings.catch_warnings():  # the trainer warns of duplicates it drops; the check reports them
            warnings.simplefilter("ignore")
            load_file(path, text_column, label_column, encoding)
        return [Row((record.get(text_column) or "").strip(), (record.get(label_column) or "").strip(), str(path),
                    line, split) for line, record in read_rows(path, encoding)]
    except DataError as error:
        raise DataCheckError(str(error)) from None
