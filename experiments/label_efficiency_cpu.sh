#!/usr/bin/env bash
# Notebook 03's cpu-profile runs: SimCLR pretraining of resnet_lite (width 16) on the Training
# faces for 20 minutes, then the same network fine-tuned from it and from random weights on
# 5 / 10 / 25 / 100 % of the Training labels, with the same budget per fraction.
# Fine-tunes use batch 64 (more optimizer steps on the small fractions) and --precise-bn: the
# BatchNorm moving averages lag a randomly initialised net's fast-changing weights, and without
# recomputing them it evaluated at about chance although its batch statistics were far better.
# Data: $FER2013_PATH or data/. Logs: logs/. Finished runs are skipped on a restart.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
ARCH=(--model resnet_lite --model-kwargs '{"width": 16}' --profile cpu --seed 0)
[[ -f results/simclr-cpu.json ]] || .venv/bin/python -m fer_utils pretrain "${ARCH[@]}" \
  --time-budget 20 --run-name simclr-cpu > logs/simclr-cpu.txt 2>&1
for spec in 0.05:16 0.1:10 0.25:6 1.0:3; do  # label fraction : epochs
  fraction=${spec%:*} epochs=${spec#*:}
  for init in simclr random; do
    name=labels-$fraction-$init-cpu
    start=(); [[ $init == simclr ]] && start=(--init models/simclr-cpu.keras)
    [[ -f results/$name.json ]] || .venv/bin/python -m fer_utils train "${ARCH[@]}" \
      --epochs "$epochs" --batch-size 64 --precise-bn --label-fraction "$fraction" "${start[@]}" \
      --run-name "$name" --no-tta > "logs/$name.txt" 2>&1
  done
done
