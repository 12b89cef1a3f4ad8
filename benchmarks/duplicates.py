"""Issue 37's duplicates goal for `tuneship data check` (BENCHMARKS.md): every exact duplicate found, and near
duplicates (the same review with its case or punctuation changed) found at recall 0.9 or more.

    .venv/bin/python benchmarks/duplicates.py [--rows 3000] [--planted 150]

Takes `--rows` rotten-tomatoes reviews (seeded), appends `--planted` exact copies of some and `--planted` altered
copies of others (upper or lower case, punctuation added or removed, spaces doubled; seeded), runs the check as
`tuneship data check` does, and scores what it reports against what was planted. Writes
benchmarks/results/duplicates.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine

RESULTS = Path(__file__).resolve().parent / "results"


def alter(text: str, rng: random.Random) -> str:
    """The same review, as a copy-paste or a second scrape would change it."""
    changes = [str.upper, str.lower, lambda t: t.capitalize(), lambda t: re.sub(r"[.,!?;:'\"]", "", t),
               lambda t: t + " !", lambda t: t.replace(" ", "  "), lambda t: t.replace(",", " ,")]
    changed = text
    for change in rng.sample(changes, 2):
        changed = change(changed)
    return changed if changed != text else text.upper() + "."


def main() -> None:
    from tuneship.datacheck.check import check
    from tuneship.datacheck.options import CheckOptions
    from tuneship.trainer.builtin_data import load_builtin

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--planted", type=int, default=150)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    examples = load_builtin("rotten-tomatoes").examples
    rng = random.Random(args.seed)
    rng.shuffle(examples)
    rows = [(e.text, e.label) for e in examples[:args.rows]]
    sources = rng.sample(range(len(rows)), 2 * args.planted)
    exact, near = set(), set()
    for index in sources[:args.planted]:
        rows.append(rows[index])
        exact.add(len(rows) + 1)  # the file's line (the header is line 1)
    for index in sources[args.planted:]:
        rows.append((alter(rows[index][0], rng), rows[index][1]))
        near.add(len(rows) + 1)
    folder = Path(tempfile.mkdtemp(prefix="duplicates-"))
    data = folder / "planted.csv"
    with data.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    report = check(CheckOptions(output=folder / "check", training={"data": str(data)}))
    found: dict[str, set[int]] = {}
    for finding in report.findings:
        found.setdefault(finding.kind, set()).add(finding.line)
    repeats = found.get("duplicate", set()) | found.get("near_duplicate", set())
    summary = {
        "machine": machine(), "rows": len(rows), "planted_exact": len(exact), "planted_near": len(near),
        "exact_recall": round(len(exact & found.get("duplicate", set())) / len(exact), 3),
        "near_recall": round(len(near & found.get("near_duplicate", set())) / len(near), 3),
        "near_found_as_any_repeat": round(len(near & repeats) / len(near), 3),
        "duplicates_reported": len(found.get("duplicate", set())),
        "near_duplicates_reported": len(found.get("near_duplicate", set())),
        "reported_outside_the_planted": len(repeats - exact - near),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "duplicates.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
