"""The machine a run trains on: which dtype policy (config.POLICIES) and which ``tf.distribute``
strategy suit it.

One code path for every machine. On a CPU the strategy is TensorFlow's default one (a single
replica) and the policy float32; on one GPU, ``mixed_float16`` (float16 compute on the tensor
cores, float32 weights, dynamic loss scaling, the softmax kept in float32); on several GPUs of
one host a ``MirroredStrategy``; in a cluster described by ``TF_CONFIG`` a
``MultiWorkerMirroredStrategy``; on a Colab TPU a ``TPUStrategy``. Keras distributes the
tf.data pipeline over the replicas (each gets its share of every global batch) and sums their
gradients, so training, evaluation, checkpoints and resume are the same code whatever the
strategy.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass

import tensorflow as tf


def accelerators(kind: str = "GPU") -> list[tf.config.PhysicalDevice]:
    """The physical devices of ``kind`` (``GPU`` or ``TPU``) TensorFlow sees."""
    return tf.config.list_physical_devices(kind)


def default_policy() -> str:
    """``mixed_float16`` where a GPU is visible (about twice the speed of float32 on T4 / A100
    class GPUs), ``mixed_bfloat16`` on a TPU, float32 on a CPU (these CPUs have no fast
    16-bit arithmetic: ``benchmarks/bench_training.py`` measures it)."""
    if accelerators("GPU"):
        return "mixed_float16"
    if accelerators("TPU"):
        return "mixed_bfloat16"
    return "float32"


def resolve_policy(policy: str) -> str:
    """``policy``, with ``auto`` replaced by :func:`default_policy`."""
    return default_policy() if policy == "auto" else policy


def cluster_workers() -> int:
    """How many workers ``TF_CONFIG`` describes (0 when it is unset or has no cluster)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return len(config.get("cluster", {}).get("worker", []))


def choose_strategy() -> tf.distribute.Strategy:
    """The strategy for this machine: a cluster's (``TF_CONFIG`` with several workers), a TPU's,
    several local GPUs mirrored, else TensorFlow's default single-replica strategy."""
    if cluster_workers() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if accelerators("TPU"):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if len(accelerators("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class Placement:
    """Where and how a run trained, as its record keeps it."""

    device: str  # e.g. "2 × NVIDIA A100-SXM4-40GB" or "CPU"
    strategy: str  # the tf.distribute strategy's class name
    replicas: int
    policy: str
    xla: bool


def describe(strategy: tf.distribute.Strategy, policy: str, xla: bool) -> Placement:
    """The :class:`Placement` of a run under ``strategy`` with the resolved ``policy``."""
    gpus = accelerators("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        device = f"{len(gpus)} × {name}" if len(gpus) > 1 else name
    else:
        device = "TPU" if accelerators("TPU") else "CPU"
    workers = max(1, cluster_workers())
    if workers > 1:
        device = f"{workers} workers × {device}"
    replicas = strategy.num_replicas_in_sync
    return Placement(device, type(strategy).__name__, replicas, policy, bool(xla))


def set_threads(threads: int | None = None) -> None:
    """Use ``threads`` cores for TensorFlow's ops (default: all). TensorFlow fixes its thread
    pools at its first op: after that (a notebook cell run again, several runs in one
    process) a different count only draws a warning, and the pools stay as they are."""
    threads = threads or os.cpu_count() or 1
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        warnings.warn(
            f"TensorFlow is already running with {current or 'its default'} intra-op threads; "
            f"{threads} would take a fresh process (or a restarted kernel)",
            stacklevel=2,
        )
