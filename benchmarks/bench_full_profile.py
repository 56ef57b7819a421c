"""What the ``full`` profile's VGG recipe costs, and an estimate of its hours on a GPU.

    python benchmarks/bench_full_profile.py
    python benchmarks/bench_full_profile.py --utilisation 0.3 --epochs 300

No GPU has run this recipe here, so GPU time is an estimate, and the script says what from:

* training FLOPs: 3 × the forward FLOPs of ``recipes/vgg-khaireddin.json``'s model per face
  (counted from its layers), × the Training faces × the epochs;
* a GPU's sustained rate: its dense float16 tensor-core peak × ``--utilisation`` (small 40×40
  convolutions keep a GPU far from its peak: 0.15 is a guess, not a measurement);
* the input pipeline: the ``strong`` augmentation measured here, on this machine's cores (a
  Colab VM has two, like the machine this was written on): a GPU cannot train faster than
  its faces are augmented.

The estimate is the larger of the compute time and the input-pipeline time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fer_utils.config import get_profile, project_root
from fer_utils.errors import run_script
from fer_utils.models import build_model, forward_flops
from fer_utils.training import make_dataset

TRAINING_FACES = 28709
PEAKS = {"T4": 65e12, "A100": 312e12}  # dense float16 tensor-core FLOP/s (vendor data sheets)


def pipeline_rate(augment: str, batch: int, batches: int = 40) -> float:
    """Faces per second that the tf.data pipeline with ``augment`` delivers on this CPU."""
    faces = np.random.default_rng(0).integers(0, 256, (batch * batches, 48, 48), np.uint8)
    targets = np.eye(7, dtype=np.float32)[np.zeros(len(faces), int)]
    data = make_dataset(faces, targets, batch, augment, shuffle=True)
    for _ in data.take(3):  # warm-up: tracing, thread pools
        pass
    start = time.perf_counter()
    n = sum(int(x.shape[0]) for x, _ in data)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(project_root() / "recipes/vgg-khaireddin.json"))
    parser.add_argument("--epochs", type=int, default=get_profile("full").epochs)
    parser.add_argument("--utilisation", type=float, default=0.15)
    args = parser.parse_args()
    recipe = json.loads(Path(args.recipe).read_text())
    batch = get_profile("full").batch_size
    model = build_model(recipe["model"], **recipe.get("model_kwargs", {}))
    flops = forward_flops(model)
    total = 3 * flops * TRAINING_FACES * args.epochs
    rate = pipeline_rate(recipe.get("augment", "basic"), batch)
    input_hours = TRAINING_FACES * args.epochs / rate / 3600
    print(f"recipe {args.recipe}: {model.count_params() / 1e6:.1f} M parameters, "
          f"{flops / 1e9:.2f} GFLOP forward per face, {args.epochs} epochs of "
          f"{TRAINING_FACES} faces = {total / 1e15:.1f} PFLOP of training")  # fmt: skip
    print(f"input pipeline ('{recipe.get('augment')}' augmentation, batch {batch}) on this "
          f"machine: {rate:.0f} faces/s → at least {input_hours:.1f} h")  # fmt: skip
    for gpu, peak in PEAKS.items():
        compute_hours = total / (peak * args.utilisation) / 3600
        print(f"{gpu}: compute {compute_hours:.1f} h at {args.utilisation:.0%} of its "
              f"{peak / 1e12:.0f} TFLOP/s float16 peak; estimate "
              f"{max(compute_hours, input_hours):.1f} h")  # fmt: skip


if __name__ == "__main__":
    run_script(main)
