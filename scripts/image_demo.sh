#!/usr/bin/env bash
# The image demonstration, end to end on the embedded defaults (about 3 minutes on 2 CPU cores):
#   frozen MobileNetV2 features + logistic regression on the built-in LFW faces subset -> export (validated fp32,
#   static int8, fp16 through the gate) -> serve with Triton -> classify photos from raw bytes -> metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

GRPC_PORT="${GRPC_PORT:-8001}" HTTP_PORT="${HTTP_PORT:-8000}" METRICS_PORT="${METRICS_PORT:-8002}"
PHOTOS="$(.venv/bin/python -c 'import importlib.util as u; print(next(iter(u.find_spec("skimage").submodule_search_locations)) + "/data")')"
mkdir -p runs

echo; echo "== 1/5 transfer learning: MobileNetV2 features + logistic regression on the faces set"
tuneship train --task image-classification --data faces --method features --output runs/faces --overwrite

echo; echo "== 2/5 export (fp32, static int8, fp16 through the accuracy gate) and publish 'faces'"
tuneship export runs/faces --name faces --repository model_repository

echo; echo "== 3/5 start the embedded Triton server"
tuneship serve --model-repository model_repository --grpc-port "$GRPC_PORT" --http-port "$HTTP_PORT" \
  --metrics-port "$METRICS_PORT" --log-file runs/tritonserver-images.log &
SERVER=$!
stop_server() { kill -INT "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true; }
trap stop_server EXIT
for _ in $(seq 1 120); do tuneship health --url "127.0.0.1:$GRPC_PORT" --model faces >/dev/null 2>&1 && break; sleep 1; done

echo; echo "== 4/5 classify image files over gRPC (the server decodes, resizes and normalises them)"
tuneship infer --url "127.0.0.1:$GRPC_PORT" --model faces "$PHOTOS/astronaut.png" "$PHOTOS/camera.png" \
  runs/faces/eval_images/0000[0-5].png
# Prediction counts reach the metrics endpoint at most once a second, with the next request.
sleep 1.2; tuneship health --url "127.0.0.1:$GRPC_PORT" --model faces >/dev/null

echo; echo "== 5/5 requests and predictions on Triton's Prometheus endpoint (:$METRICS_PORT)"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" \
  | grep -E '^(nv_inference_request_success\{model="faces"|tuneship_predictions_total\{.*model="faces")' || true

stop_server
trap - EXIT
echo "done: checkpoint runs/faces (metrics.json, training_curve.png), models model_repository/faces*"
