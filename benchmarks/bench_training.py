"""Training and inference speed of the registered models on this machine.

    python benchmarks/bench_training.py                      # the default grid
    python benchmarks/bench_training.py --models five_layer --policies float32 mixed_bfloat16 \
        --jit on off --batch-sizes 128 256 --augment none basic
    python benchmarks/bench_training.py --models 'resnet_lite:{"width": 16}' --policies float32

A model is a registry name, optionally followed by ``:`` and its keyword arguments as JSON.

For every combination it prints training images/s (a timed epoch after a warm-up), inference
images/s, forward GFLOP per image, the fraction of this CPU's measured matmul peak that
training reaches (training FLOPs ≈ 3 × forward), and the ceiling: the training images/s at
100 % of that peak. Data are random faces of the real shape, so the numbers measure compute
and the input pipeline, not accuracy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time

import numpy as np

from fer_utils.devices import set_threads
from fer_utils.errors import run_script
from fer_utils.models import forward_flops


def matmul_peak(dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """Measured FLOP/s of a large square matmul in ``dtype`` (the practical peak)."""
    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda x: tf.linalg.matmul(x, x), jit_compile=False)
    matmul(a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = matmul(a)
    result.numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def bench(model_name: str, policy: str, jit: bool, batch: int, augment: str, steps: int) -> dict:
    """Images/s for training and inference of one configuration."""
    import keras

    from fer_utils.models import build_model
    from fer_utils.training import make_dataset

    rng = np.random.default_rng(0)
    n = batch * steps
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, n)]
    name, _, kwargs = model_name.partition(":")
    model = build_model(name, policy=policy, **json.loads(kwargs or "{}"))
    model.compile("adamw", "categorical_crossentropy", jit_compile=jit)
    data = (
        make_dataset(images, y, batch, augment, shuffle=True).cache() if augment == "none" else None
    )
    data = data or make_dataset(images, y, batch, augment, shuffle=True)
    model.fit(data.take(3), epochs=1, verbose=0)  # compile and warm up
    start = time.perf_counter()
    model.fit(data, epochs=1, verbose=0)
    train_rate = n / (time.perf_counter() - start)
    faces = images[:4096, ..., None].astype(np.float32)
    model.predict(faces[:512], batch_size=512, verbose=0)
    start = time.perf_counter()
    model.predict(faces, batch_size=512, verbose=0)
    infer_rate = len(faces) / (time.perf_counter() - start)
    keras.backend.clear_session()
    return {"train": train_rate, "infer": infer_rate, "flops": forward_flops(model)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["baseline", "five_layer", "fast_cnn", "resnet_lite", "vgg"]
    )
    parser.add_argument("--policies", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--jit", nargs="+", default=["off"], choices=["on", "off"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128])
    parser.add_argument("--augment", nargs="+", default=["basic"])
    parser.add_argument("--steps", type=int, default=30, help="training steps timed per config")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all)")
    args = parser.parse_args()
    set_threads(args.threads)
    import tensorflow as tf

    peaks = {p: matmul_peak("bfloat16" if "bfloat16" in p else "float32") for p in args.policies}
    print(f"cores: {os.cpu_count()}   TensorFlow {tf.__version__}")
    for policy, peak in peaks.items():
        print(f"measured matmul peak ({policy}): {peak / 1e9:.0f} GFLOP/s")
    print(
        f"{'model':<30} {'policy':<15} jit batch augment  train img/s  infer img/s  GFLOP/img"
        "  % peak  ceiling img/s"
    )
    for model, policy, jit, batch, augment in itertools.product(
        args.models, args.policies, args.jit, args.batch_sizes, args.augment
    ):
        r = bench(model, policy, jit == "on", batch, augment, args.steps)
        ceiling = peaks[policy] / (3 * r["flops"])
        print(
            f"{model:<30} {policy:<15} {jit:<3} {batch:>5} {augment:<8} {r['train']:>11.0f} "
            f"{r['infer']:>12.0f} {r['flops'] / 1e9:>10.3f} {100 * r['train'] / ceiling:>6.1f} "
            f"{ceiling:>14.0f}",
            flush=True,
        )


if __name__ == "__main__":
    run_script(main)
