"""The machine decides the dtype policy and the tf.distribute strategy; training is the same
code with one replica or several (tested on a CPU split into two logical devices)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from fer_utils import devices

from conftest import ROOT

FAKE_GPU = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")


def test_the_policy_is_float16_on_a_gpu_and_float32_on_a_cpu(monkeypatch) -> None:
    real = tf.config.list_physical_devices
    assert devices.resolve_policy("auto") == "float32"  # this machine has no GPU
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: [FAKE_GPU] if kind == "GPU" else []
    )
    assert devices.resolve_policy("auto") == "mixed_float16"
    assert devices.resolve_policy("float32") == "float32"  # asked for: kept
    monkeypatch.setattr(tf.config, "list_physical_devices", real)
    assert devices.default_policy() == "float32"


def test_a_single_device_trains_under_the_default_strategy() -> None:
    strategy = devices.choose_strategy()
    assert strategy.num_replicas_in_sync == 1
    placement = devices.describe(strategy, "float32", False)
    assert (placement.device, placement.replicas) == ("CPU", 1)


@pytest.mark.parametrize(
    ("config", "workers"),
    [
        (None, 0),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, 2),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, 2),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker"}}, 1),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief"}}, 1),
    ],
)
def test_tf_config_says_how_many_workers_there_are(
    config: dict | None, workers: int, monkeypatch
) -> None:
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert devices.cluster_workers() == workers


MIRRORED = """
import json, sys
import keras, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, "tests")
from pathlib import Path
from test_training import FAST, synthetic
from fer_utils.evaluation import predict
from fer_utils.training import TrainConfig, train

class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise KeyboardInterrupt

folder = Path(sys.argv[1])
data = synthetic(512)
train_set, val_set = data.split("Training"), data.split("PublicTest")
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = tf.distribute.OneDeviceStrategy("/cpu:0")
config = TrainConfig("five_layer", **{**FAST, "epochs": 3, "batch_size": 16, "schedule": "plateau"})
# the same global batch (2 × 16) and learning rate (scaled with the replicas) on one device
single = TrainConfig("five_layer", **{**FAST, "epochs": 3, "batch_size": 32, "schedule": "plateau",
                                      "learning_rate": 2 * FAST["learning_rate"]})
out = {}
for name, cfg, strategy in (("mirrored", config, mirrored), ("single", single, one)):
    result = train(cfg, train_set, val_set, folder / name, verbose=0, strategy=strategy)
    out[name] = {"loss": result.history["loss"], "replicas": result.placement.replicas,
                 "steps": result.optimizer_steps,
                 "predicted": predict(result.model, val_set.images).argmax(1).tolist()}
try:
    train(config, train_set, val_set, folder / "resumed", verbose=0, strategy=mirrored,
          extra_callbacks=(StopAfterFirstEpoch(),))
except KeyboardInterrupt:
    pass
resumed = train(config, train_set, val_set, folder / "resumed", verbose=0, strategy=mirrored)
out["resumed"] = {"epochs": resumed.epochs_run, "steps": resumed.optimizer_steps,
                  "loss": resumed.history["loss"]}
out["labels"] = val_set.labels.tolist()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_mirrored_training_on_two_devices_matches_one_device_and_resumes(tmp_path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.split("RESULT ", 1)[1])
    mirrored, single, resumed = out["mirrored"], out["single"], out["resumed"]
    assert (mirrored["replicas"], single["replicas"]) == (2, 1)
    assert mirrored["steps"] == single["steps"]  # the same global batches
    # the same gradient steps: per-replica BatchNorm statistics are the only difference
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=0.15, abs=0.01)
    labels = out["labels"]
    for run in (mirrored, single):
        accuracy = sum(p == y for p, y in zip(run["predicted"], labels, strict=True)) / len(labels)
        assert accuracy > 0.6  # chance: 0.25
    assert resumed["epochs"] == 3 and resumed["steps"] == mirrored["steps"]
    assert len(resumed["loss"]) == 3
