"""Two `tuneship search` workers on one PostgreSQL study (BENCHMARKS.md): the same command started twice, one
budget; afterwards the study must hold exactly the budget's trials, each run once, none lost.

    .venv/bin/python benchmarks/search_postgres.py --trials 8 --out benchmarks/results/search_postgres.json

Starts its own PostgreSQL (initdb in a scratch folder, loopback only; as the `postgres` user when run as root),
as the test suite does. The trials are small (a few hundred rotten-tomatoes reviews, the features and full
methods) so that the figure is about sharing the study, not about training."""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import machine

ROOT = Path(__file__).resolve().parents[1]
SPACE = """\
methods: [features, full]
precisions: [fp32, int8]
full: {epochs: 1, max_length: 64}
features: {max_length: 64}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_postgres.json")
    args = parser.parse_args()
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    if initdb is None:
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    binaries = Path(initdb).resolve().parent
    folder = Path(tempfile.mkdtemp(prefix="search-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    port = _free_port()
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "tuneship"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-w", "-l", str(folder / "log"),
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="search-workers-"))
    storage = f"postgresql+psycopg://tuneship@127.0.0.1:{port}/postgres"
    try:
        (work / "space.yaml").write_text(SPACE)
        command = [str(ROOT / ".venv" / "bin" / "tuneship"), "search", "--data", "rotten-tomatoes",
                   "--max-train-samples", str(args.samples), "--max-eval-samples", "200", "--space",
                   str(work / "space.yaml"), "--trials", str(args.trials), "--storage", storage, "--output",
                   str(work / "out"), "--window", "1", "--gate-samples", "100"]
        started = time.monotonic()
        workers = [subprocess.Popen(command, stdout=(work / f"worker-{i}.log").open("w"), stderr=subprocess.STDOUT)
                   for i in range(args.workers)]
        codes = [worker.wait() for worker in workers]
        seconds = time.monotonic() - started
        import optuna

        study = optuna.load_study(study_name="tuneship-search", storage=storage)
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        folders = [t.user_attrs.get("outcome", {}).get("checkpoint") for t in complete]
        row = re.compile(r"^\s*\d+\*?(complete|pruned|fail)\b")
        per_worker = {f"worker {i}": sum(bool(row.match(line)) for line in
                                         (work / f"worker-{i}.log").read_text().splitlines())
                      for i in range(args.workers)}
        result = {
            "machine": machine(), "command": " ".join(command), "workers": args.workers, "budget": args.trials,
            "exit_codes": codes, "seconds": round(seconds, 1), "trials_in_study": len(trials),
            "states": {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
            "not_complete": [{"number": t.number, "state": t.state.name, "reason": t.user_attrs.get("reason")}
                             for t in trials if t.state.name != "COMPLETE"],
            "complete_distinct_numbers": len({t.number for t in complete}),
            "complete_choices_distinct": len({json.dumps(t.user_attrs.get("choice"), sort_keys=True)
                                              for t in complete}),
            "complete_distinct_folders": len(set(folders)),
            "rows_per_worker_log": per_worker,
        }
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-w", "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
