#!/usr/bin/env bash
# A separate venv for the Optimum baseline: optimum-onnx pins transformers < 4.58 (tuneship uses 5.x).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv-optimum/bin/python ]] || python3 -m venv .venv-optimum
.venv-optimum/bin/python -m pip install -qq --upgrade pip
.venv-optimum/bin/python -m pip install -qq "torch==2.13.0"
.venv-optimum/bin/python -m pip install -qq "optimum-onnx[onnxruntime]" "numpy<2"
.venv-optimum/bin/python -c "import optimum.onnxruntime, transformers; print('optimum venv ready, transformers', transformers.__version__)"
