#!/usr/bin/env bash
# The main job, end to end on the embedded defaults:
#   fine-tune MiniLM on Rotten Tomatoes -> export to ONNX in model_repository/ -> serve with Triton
#   -> classify reviews over gRPC -> print Triton's request count and latency -> stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

GRPC_PORT="${GRPC_PORT:-8001}" HTTP_PORT="${HTTP_PORT:-8000}" METRICS_PORT="${METRICS_PORT:-8002}"
TRAIN_SAMPLES="${TRAIN_SAMPLES:-6000}"
mkdir -p runs

echo; echo "== 1/5 fine-tune MiniLM-L6 on Rotten Tomatoes (a short run: $TRAIN_SAMPLES reviews, 1 epoch)"
tuneship train --data rotten-tomatoes --model minilm --max-train-samples "$TRAIN_SAMPLES" \
  --max-eval-samples 1000 --epochs 1 --output runs/sentiment --overwrite

echo; echo "== 2/5 export to ONNX and publish the Triton ensemble to model_repository/"
tuneship export runs/sentiment --name sentiment --repository model_repository --keep 2

echo; echo "== 3/5 start the embedded Triton server"
tuneship serve --model-repository model_repository --grpc-port "$GRPC_PORT" --http-port "$HTTP_PORT" \
  --metrics-port "$METRICS_PORT" --log-file runs/tritonserver.log &
SERVER=$!
stop_server() { kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true; }
trap stop_server EXIT

echo; echo "== 4/5 classify reviews over gRPC (label, probability, text)"
tuneship infer --url "127.0.0.1:$GRPC_PORT" --model sentiment --wait 180 \
  "A gripping, beautifully acted film that stays with you for days." \
  "Dull, overlong and badly written; I checked my watch every ten minutes." \
  "The effects are dazzling, but the story never comes to life." \
  "A warm, funny and surprisingly moving family comedy." \
  "An incoherent mess with no reason to exist."

echo; echo "== 5/5 Triton's own metrics (Prometheus endpoint :$METRICS_PORT)"
tuneship metrics --url "http://127.0.0.1:$METRICS_PORT/metrics"

echo; echo "== stopping the server"
stop_server
trap - EXIT
echo "done: checkpoint runs/sentiment (metrics.json, training_curve.png), repository model_repository/"
