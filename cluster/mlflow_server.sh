#!/usr/bin/env bash
# MLflow tracking server for fgi: a database backend and an artifact store on shared or object storage.
#
#   MLFLOW_BACKEND_URI=postgresql://mlflow:PASS@db:5432/mlflow \
#   MLFLOW_ARTIFACTS=s3://my-bucket/fgi-mlflow \
#   cluster/mlflow_server.sh
#
# Defaults: SQLite and artifacts under $FGI_HOME (~/.fgi), on 127.0.0.1:5000. Bind to 127.0.0.1 and reach
# it through an SSH tunnel or port-forward; the server has no authentication of its own.
set -euo pipefail

FGI_HOME="${FGI_HOME:-$HOME/.fgi}"
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
BACKEND="${MLFLOW_BACKEND_URI:-sqlite:///$FGI_HOME/mlflow-server.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS:-$FGI_HOME/mlflow-artifacts}"
mkdir -p "$FGI_HOME"

exec mlflow server \
  --host "$HOST" \
  --port "$PORT" \
  --backend-store-uri "$BACKEND" \
  --artifacts-destination "$ARTIFACTS" \
  --workers "${MLFLOW_WORKERS:-2}"
