"""The documentation stays true: every `tuneship ...` command in README.md and docs/ parses with the real command
line (flags that exist, values of the right type), every subcommand has an example and a row in the commands
page, and README stays a short introduction (the reference is the MkDocs site, built --strict by scripts/test.sh)."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest

from tuneship.cli import build_parser

PARSER = functools.cache(build_parser)  # one parser for every example: building it imports every stage's CLI

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _shell_blocks(text: str) -> list[str]:
    """The bodies of the page's ```bash (or unlabelled) fenced blocks, read line by line."""
    blocks, body, language = [], [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if language is None:
                language = stripped[3:].strip() or "bash"
                body = []
            else:
                if language in ("bash", "sh", "console"):
                    blocks.append("\n".join(body))
                language = None
            continue
        if language is not None:
            body.append(stripped)
    return blocks


def _commands(page: Path) -> list[tuple[str, str]]:
    """(where, command) for each `tuneship` command line of the page's shell blocks (continuations joined,
    comments, backgrounding and pipes dropped)."""
    found = []
    for block in _shell_blocks(page.read_text(encoding="utf-8")):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if not line.startswith("tuneship "):
                continue
            line = re.split(r"\s+#\s", line)[0]
            line = re.split(r"\s[|&]\s|\s&$|&&", line)[0].rstrip(" &")
            found.append((f"{page.relative_to(ROOT)}: {line}", line))
    return found


EXAMPLES = [example for page in PAGES for example in _commands(page)]


FILE_ARGUMENT = re.compile(r"^@?([\w./-]+\.(?:pem|key|crt|json|csv|tsv|txt|jsonl|png|yaml|toml))$")


@pytest.mark.parametrize(("where", "command"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_documented_command_parses(where: str, command: str, capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = shlex.split(command)[1:]
    monkeypatch.chdir(tmp_path)  # the files an example names exist here: flags and types are what is checked
    for argument in argv:
        match = FILE_ARGUMENT.match(argument.split("=")[-1])
        if match and not match[1].startswith("/"):
            (tmp_path / match[1]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / match[1]).write_text("{}")
    try:
        PARSER().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code != 0:  # --help exits 0
            pytest.fail(f"{where}: {capsys.readouterr().err.strip().splitlines()[-1]}")


def test_every_subcommand_has_an_example_and_a_row_in_the_commands_page() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert commands is not None
    documented = {shlex.split(command)[1] for _, command in EXAMPLES if len(shlex.split(command)) > 1}
    index = (ROOT / "docs" / "commands" / "index.md").read_text(encoding="utf-8")
    for name in commands:
        assert name in documented, f"no example of `tuneship {name}` in README.md or docs/"
        assert f"`tuneship {name}" in index, f"`tuneship {name}` has no row in docs/commands/index.md"


def test_readme_is_an_introduction_not_the_reference() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 400, f"README.md has {len(lines)} lines: move reference material into docs/"
