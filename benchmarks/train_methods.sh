#!/usr/bin/env bash
# Trainer benchmark (BENCHMARKS.md): every method on the bundled MiniLM and rotten-tomatoes, seeded 80/20 split.
# Usage: bash benchmarks/train_methods.sh [METHOD ...]   (default: full lora features ptuning prompt-tuning)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT="${OUT_DIR:-runs/bench}"
mkdir -p "$OUT"
methods=("$@")
[[ ${#methods[@]} -gt 0 ]] || methods=(full lora features ptuning prompt-tuning)
for method in "${methods[@]}"; do
  case "$method" in
    full) extra=(--epochs 3 --max-length 64) ;;
    lora) extra=(--epochs 3 --max-length 64) ;;
    ptuning|prompt-tuning) extra=(--epochs 3 --max-length 64) ;;
    features) extra=(--max-length 64) ;;
  esac
  echo "== $method: tuneship train --data rotten-tomatoes --model minilm --method $method ${extra[*]} --output $OUT/$method"
  /usr/bin/time -v tuneship train --data rotten-tomatoes --model minilm --method "$method" "${extra[@]}" \
    --output "$OUT/$method" --overwrite --feature-cache "$OUT/feature-cache" 2> "$OUT/$method.time" \
    | grep -v "it/s\]" > "$OUT/$method.log" || { echo "$method failed: see $OUT/$method.log"; continue; }
  python3 - "$OUT/$method" <<'PY'
import json, sys
from pathlib import Path
d = Path(sys.argv[1]); m = json.loads((d / "metrics.json").read_text()); man = json.loads((d / "tuneship.json").read_text())
log = json.loads((d / "training_log.json").read_text())
per_epoch = [(round(e["epoch"], 2), round(e["eval_accuracy"], 4)) for e in log if "eval_accuracy" in e]
print(json.dumps({"method": man["method"], "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
                  "train_seconds": m["train_seconds"], "examples_per_second": m["train_examples_per_second"],
                  "eval_accuracy_by_epoch": per_epoch, "trainable_parameters": man.get("trainable_parameters")}))
PY
done
