#!/usr/bin/env bash
# MLflow tracking server for fgi: a database backend and an artifact store on shared or object storage.
#
# Shared sweeps (several drivers, resumes, the UI at once) need a real database: PostgreSQL.
#
#   # once, on the database host (PostgreSQL 13+):
#   sudo -u postgres createuser --pwprompt mlflow
#   sudo -u postgres createdb --owner mlflow mlflow
#   # the server's Python needs the driver:  pip install psycopg2-binary   (or: pip install 'fgi[test]')
#
#   MLFLOW_BACKEND_URI=postgresql+psycopg2://mlflow:PASS@db:5432/mlflow \
#   MLFLOW_ARTIFACTS=s3://my-bucket/fgi-mlflow \
#   cluster/mlflow_server.sh
#
# Name the driver (postgresql+psycopg2://): SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3.
# MLflow creates and migrates its tables on first start. Keep the password out of shell history: put it
# in ~/.pgpass (db:5432:mlflow:mlflow:PASS, mode 0600) and leave it out of the URI.
#
# Defaults: SQLite and artifacts under $FGI_HOME (~/.fgi), on 127.0.0.1:5000 (one driver at a time). Bind to
# 127.0.0.1 and reach it through an SSH tunnel or port-forward; the server has no authentication of its own.
set -euo pipefail

FGI_HOME="${FGI_HOME:-$HOME/.fgi}"
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
BACKEND="${MLFLOW_BACKEND_URI:-sqlite:///$FGI_HOME/mlflow-server.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS:-$FGI_HOME/mlflow-artifacts}"
PYTHON="${MLFLOW_PYTHON:-python}"
mkdir -p "$FGI_HOME"

case "$BACKEND" in
  postgresql://*)
    echo "mlflow_server.sh: write MLFLOW_BACKEND_URI as postgresql+psycopg2://... (a bare postgresql:// needs psycopg 3)" >&2
    exit 2 ;;
  postgresql+psycopg2://*)
    if ! "$PYTHON" -c "import psycopg2" 2>/dev/null; then
      echo "mlflow_server.sh: MLFLOW_BACKEND_URI is PostgreSQL but $PYTHON cannot import psycopg2;" \
           "install it with: $PYTHON -m pip install psycopg2-binary" >&2
      exit 2
    fi ;;
  sqlite:*|mysql*|mssql*) ;;
  *) echo "mlflow_server.sh: MLFLOW_BACKEND_URI=$BACKEND is not a database URI (postgresql://, sqlite:///...)" >&2
     exit 2 ;;
esac

exec mlflow server \
  --host "$HOST" \
  --port "$PORT" \
  --backend-store-uri "$BACKEND" \
  --artifacts-destination "$ARTIFACTS" \
  --workers "${MLFLOW_WORKERS:-2}"
