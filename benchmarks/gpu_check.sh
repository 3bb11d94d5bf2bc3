#!/usr/bin/env bash
# One prepared GPU check for a session lent an H200 (under 6 minutes). Run from the repo root on the
# device machine; figures go to $OUT (or ./gpu_out) and are copied into docs/RESULTS.md by hand, dated.
#   - bf16 matmul rate (the MFU denominator)
#   - teacher-student step at 224 px, batch 8 and 32, fp32 and bf16: time, images/s, TFLOP/s, MFU
#   - one 1-GPU Ray Train trial end to end (tune.py, smoke budget)
set -euo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true NO_ALBUMENTATIONS_UPDATE=1
python3 -m pip install -q -e . 2>&1 | tail -2 || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 - <<'PY' | tee "$OUT/matmul.txt"
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize(); t = time.perf_counter(); n = 50
for _ in range(n):
    a @ b
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / n
print(f"bf16 matmul 8192^3: {2 * 8192**3 / dt / 1e12:.1f} TFLOP/s")
PY
for batch in 8 32; do
  timeout 150 python3 benchmarks/bench_step.py --preset published --device cuda --batch "$batch" --steps 20 --warmup 3 \
    --settings "fp32 eager" "bf16 autocast" "bf16 + channels_last" --json "$OUT/step_b$batch.json" | tee "$OUT/step_b$batch.txt"
done
timeout 150 python3 tune.py --dataset synthetic --budget smoke --num-samples 1 --workers-per-trial 1 --gpus-per-worker 1 \
  --storage "$PWD/gpu_ray" --mlflow-uri "sqlite:///$PWD/gpu_mlflow.db" 2>&1 | tail -30 | tee "$OUT/ray_trial.txt"
