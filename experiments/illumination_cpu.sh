#!/usr/bin/env bash
# Notebook 04's cpu-profile runs: the same five_layer, seed and 4-epoch budget once per
# illumination correction, and once with brightness/contrast augmentation instead.
# Data: $FER2013_PATH or data/ (as for every command). Logs: logs/illum-*.txt. Runs already
# recorded in results/ are skipped, so the script can be restarted.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
train() { # run-name, extra train options...
  local name=$1; shift
  [[ -f results/$name.json ]] || .venv/bin/python -m fer_utils train --model five_layer \
    --profile cpu --epochs 4 --no-tta --seed 0 --run-name "$name" "$@" > "logs/$name.txt" 2>&1
}
for c in none histeq clahe gamma tan_triggs dog standardise; do
  train "illum-$c-cpu" --correction "$c"
done
train illum-lightaug-cpu --augment lighting
