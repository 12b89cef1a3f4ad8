#!/usr/bin/env bash
# A separate venv for Label Studio (Django and its stack, about 1 GB), used by tests/test_label_studio_live.py:
# the labelling queue's round trip through a real Label Studio. Not part of the test command's install.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv-label-studio/bin/python ]] || python3 -m venv .venv-label-studio
# sentry-sdk 3 refuses an option Label Studio 1.23 passes it at start-up ("Unknown option 'send_default_pii'").
.venv-label-studio/bin/python -m pip install -q "label-studio>=1.20,<2" "sentry-sdk<3"
echo "Label Studio: $(.venv-label-studio/bin/python -c 'import label_studio; print(label_studio.__version__)')"
