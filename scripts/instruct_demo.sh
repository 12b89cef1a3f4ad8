#!/usr/bin/env bash
# The instruct demonstration, end to end on the embedded defaults:
#   instruction-tune SmolLM2-135M-Instruct (LoRA) on Rotten Tomatoes sentiment questions -> export to
#   onnxruntime-genai (validated against PyTorch, gated) -> serve with Triton -> stream answers -> metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

GRPC_PORT="${GRPC_PORT:-8001}" HTTP_PORT="${HTTP_PORT:-8000}" METRICS_PORT="${METRICS_PORT:-8002}"
TRAIN_SAMPLES="${TRAIN_SAMPLES:-600}"
mkdir -p runs

echo; echo "== 1/5 instruction-tune SmolLM2-135M-Instruct on $TRAIN_SAMPLES sentiment questions (LoRA, 1 epoch)"
tuneship train --task instruct --data rotten-tomatoes --max-train-samples "$TRAIN_SAMPLES" --max-eval-samples 300 \
  --exact-match-samples 200 --epochs 1 --batch-size 8 --output runs/instruct --overwrite

echo; echo "== 2/5 export to onnxruntime-genai (fp32 and int4) and publish the streaming model 'chat'"
tuneship export runs/instruct --name chat --repository model_repository

echo; echo "== 3/5 start the embedded Triton server"
tuneship serve --model-repository model_repository --grpc-port "$GRPC_PORT" --http-port "$HTTP_PORT" \
  --metrics-port "$METRICS_PORT" --log-file runs/tritonserver-instruct.log &
SERVER=$!
stop_server() { kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true; }
trap stop_server EXIT
tuneship health --url "127.0.0.1:$GRPC_PORT" --model chat --timeout 5 >/dev/null 2>&1 || sleep 1
for _ in $(seq 1 120); do tuneship health --url "127.0.0.1:$GRPC_PORT" --model chat >/dev/null 2>&1 && break; sleep 1; done

echo; echo "== 4/5 stream answers over gRPC, and through Triton's own HTTP generate endpoint"
for review in "A gripping, beautifully acted film that stays with you for days." \
              "Dull, overlong and badly written; I checked my watch every ten minutes."; do
  tuneship generate --url "127.0.0.1:$GRPC_PORT" --model chat --max-tokens 8 --stats \
    "Is this review positive or negative? Answer with one word.

$review"
done
curl -sN "http://127.0.0.1:$HTTP_PORT/v2/models/chat/generate_stream" \
  -d '{"text_input": "Tell me about your favourite film.", "stream": true, "parameters": {"max_tokens": 24}}'
echo

echo; echo "== 5/5 generation metrics on Triton's Prometheus endpoint (:$METRICS_PORT)"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^tuneship_generation_(tokens|requests)_total' || true

stop_server
trap - EXIT
echo "done: checkpoint runs/instruct (metrics.json, training_curve.png), model model_repository/chat"
