#!/usr/bin/env bash
# Notebook 03's cpu-profile runs: SimCLR pretraining of fast_cnn on the Training faces for 40
# minutes (no labels), then the same network fine-tuned from it and from random weights on
# 5 / 10 / 25 / 100 % of the Training labels, with the same budget per fraction.
# Below 100 % the fine-tunes use batch 64 (more optimizer steps on few faces) and --precise-bn:
# the BatchNorm moving averages lag a randomly initialised net's fast-changing weights, and
# without recomputing them it evaluated at about chance although its batch statistics were far
# better. With all labels the recipe is the project's fast_cnn run (fast_cnn-ls-cpu, notebook 02's
# table), so its random-init point is that run and only the SimCLR start is trained here.
# Data: $FER2013_PATH or data/. Logs: logs/. Finished runs are skipped on a restart.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
ARCH=(--model fast_cnn --profile cpu --seed 13 --label-smoothing 0.1)
FULL=(--epochs 48 --time-budget 58)
SSL=models/simclr-fast_cnn-cpu.keras
run() {  # run NAME ARGS...: train unless results/NAME.json exists
  local name=$1; shift
  [[ -f results/$name.json ]] || .venv/bin/python -m fer_utils train "${ARCH[@]}" "$@" \
    --run-name "$name" > "logs/$name.txt" 2>&1
}
[[ -f results/simclr-fast_cnn-cpu.json ]] || .venv/bin/python -m fer_utils pretrain \
  --model fast_cnn --profile cpu --seed 13 --epochs 200 --time-budget 40 \
  --run-name simclr-fast_cnn-cpu > logs/simclr-fast_cnn-cpu.txt 2>&1
for spec in 0.05:40 0.1:30 0.25:12; do  # label fraction : epochs
  fraction=${spec%:*} epochs=${spec#*:}
  small=(--epochs "$epochs" --batch-size 64 --precise-bn --label-fraction "$fraction" --no-tta)
  run "labels-$fraction-simclr-cpu" "${small[@]}" --init "$SSL"
  run "labels-$fraction-random-cpu" "${small[@]}"
done
run labels-1.0-simclr-cpu "${FULL[@]}" --init "$SSL"
run fast_cnn-ls-cpu "${FULL[@]}"
