"""Transfer backbones, the weights-loading path, corrections inside models, and SimCLR."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from test_training import synthetic

from fer_utils.config import get_profile, project_root
from fer_utils.heads import encoder
from fer_utils.label_curve import label_curve_config
from fer_utils.models import build_model
from fer_utils.preprocessing import correct
from fer_utils.selfsupervised import NTXentLoss, PretrainConfig, pretrain, random_probe
from fer_utils.training import TrainConfig, train
from fer_utils.transfer import WeightsError, build_transfer, cached_weights, resolve_weights

SMALL = dict(backbone="mobilenetv2", size=48)


def backbone_of(model: keras.Model) -> keras.Model:
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def test_transfer_model_is_self_contained() -> None:
    model = build_transfer(**SMALL)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)), verbose=0)
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_frozen_backbone_does_not_change_during_head_training(tmp_path: Path) -> None:
    data = synthetic(128)
    config = TrainConfig("transfer", dict(SMALL), epochs=2, batch_size=32, augment="none")
    keras.utils.set_random_seed(config.seed)
    before = build_model("transfer", **SMALL)
    result = train(config, data.split("Training"), data.split("PublicTest"), tmp_path, verbose=0)
    for old, new in zip(
        backbone_of(before).get_weights(), backbone_of(result.model).get_weights(), strict=True
    ):
        assert np.array_equal(old, new)  # kernels and BatchNorm statistics alike
    head_old = before.get_layer("emotion").get_weights()
    head_new = result.model.get_layer("emotion").get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(head_old, head_new, strict=True))


def test_fine_tuning_unfreezes_only_top_non_batchnorm_layers() -> None:
    net = backbone_of(build_transfer(**SMALL, trainable_layers=10))
    trainable = [layer for layer in net.layers if layer.trainable and layer.weights]
    assert trainable and all(net.layers.index(layer) >= len(net.layers) - 10 for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)


def test_weights_round_trip_through_the_keras_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    saved = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(48, 48, 3), pooling="avg"
    )
    path = cached_weights("mobilenetv2", 48)
    path.parent.mkdir(parents=True)
    saved.save(path)  # the legacy .h5 layout of Keras' weight downloads
    source, said = resolve_weights("mobilenetv2", "imagenet", 48)
    assert source == str(path) and "Keras cache" in said
    for weights in ("imagenet", str(path)):
        loaded = backbone_of(build_transfer(**SMALL, weights=weights)).get_weights()
        for a, b in zip(saved.get_weights(), loaded, strict=True):
            assert np.array_equal(a, b)


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match=r"not found.*put that file in"):
        build_transfer(**SMALL, weights=str(tmp_path / "missing.h5"))
    source, said = resolve_weights("vgg16", "auto", 96)
    assert source is None and "RANDOM" in said and str(tmp_path) in said


def test_correction_inside_the_model_equals_correcting_first(tmp_path: Path) -> None:
    faces = synthetic(16).images[..., None].astype(np.float32)
    keras.utils.set_random_seed(0)
    corrected = build_model("five_layer", correction="clahe")
    plain = corrected.get_layer("five_layer")
    expected = plain.predict(correct(faces, "clahe"), verbose=0)
    assert np.allclose(corrected.predict(faces, verbose=0), expected, atol=1e-5)
    corrected.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert np.allclose(reloaded.predict(faces, verbose=0), expected, atol=1e-5)


def test_nt_xent_rewards_matching_views() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8, 16)).astype(np.float32)
    loss = NTXentLoss(temperature=0.1)
    matched = float(loss(np.zeros((16, 1)), np.concatenate([z, z])))
    unmatched = float(loss(np.zeros((16, 1)), np.concatenate([z, rng.normal(size=(8, 16))])))
    assert matched < 0.5 < np.log(15) - 1 < unmatched


def test_simclr_pretraining_lowers_its_loss(tmp_path: Path) -> None:
    images = synthetic(256).images
    # Width 16, not 8: TensorFlow 2.21's oneDNN kernels corrupt the heap training the 8-filter
    # resnet_lite on AVX2-only CPUs (a native crash; width 16 trains normally).
    config = PretrainConfig("resnet_lite", {"width": 16}, epochs=6, batch_size=32)
    result = pretrain(config, images, tmp_path, verbose=0)
    losses = result.history["loss"]
    assert losses[-1] < losses[0] - 0.3, losses
    assert encoder(result.model).output_shape == (None, 8 * 16)  # width·8 features


def test_the_random_feature_probe_is_the_same_on_every_run() -> None:
    data = synthetic(96)
    train, test = data.split("Training"), data.split("PublicTest")

    def probe(seed: int, before: int) -> np.ndarray:
        keras.utils.set_random_seed(before)  # whatever drew random numbers before
        args = (train.images, train.labels, {"PublicTest": test.images})
        return random_probe("fast_cnn", {}, seed, *args)["PublicTest"]

    first = probe(3, before=1)
    np.testing.assert_allclose(probe(3, before=2), first, atol=1e-5)
    assert np.abs(probe(4, before=1) - first).max() > 1e-3  # another seed: other weights


def test_committed_label_curve_runs_follow_the_notebooks_recipe() -> None:
    """The curve's records were trained with the recipe notebook 03 states (the runs from the
    command line as well): the same config from random weights and from the SimCLR encoder,
    but for a time budget (a safety stop of the long runs, never reached), with the profile's
    epochs at each share of the labels and notebook 03's seed or its repeats."""
    cpu = get_profile("cpu")
    epochs, seeds = dict(cpu.label_curve), {13, *cpu.label_seeds}
    runs = sorted((project_root() / "results").glob("labels-*-cpu*.json"))
    curve = [p for p in runs if re.fullmatch(r"labels-[\d.]+-(simclr|random)-cpu(-s\d+)?", p.stem)]
    assert len(curve) >= 6
    for path in curve:
        record = json.loads(path.read_text())
        config = record["config"]
        assert record["train_seconds"] < 60 * (config["time_budget_minutes"] or float("inf"))
        init = config["init"] and Path(config["init"]).name
        assert config["seed"] in seeds, path.name
        fraction = config["label_fraction"]
        expected = label_curve_config("fast_cnn", {}, fraction, epochs[fraction], config["seed"])
        recipe = dataclasses.asdict(expected)
        # both starts trained in float32 without XLA: an "auto" config's record says what it
        # chose (placement); records from before "auto" existed name those settings instead
        chosen = record.get("placement") or {
            "policy": config["policy"],
            "xla": config["jit_compile"],
        }
        assert (chosen["policy"], chosen["xla"]) == ("float32", False), path.name
        if config["policy"] != "auto":
            recipe |= {"policy": config["policy"], "jit_compile": config["jit_compile"]}
        recorded = {**config, "init": None, "time_budget_minutes": None}
        assert recorded == {key: recipe[key] for key in recorded}, path.name
        assert init == ("simclr-fast_cnn-cpu.keras" if "-simclr-" in path.stem else None)


def test_every_simclr_point_starts_from_the_committed_encoder() -> None:
    """Each run fine-tuned from SimCLR names its starting encoder by hash, and it is the one
    whose record and per-epoch log are committed: an encoder pretrained again means every
    point trained again."""
    results = project_root() / "results"
    encoder = json.loads((results / "simclr-fast_cnn-cpu.json").read_text())["model_sha256"]
    points = sorted(results.glob("labels-*-simclr-*cpu*.json"))
    assert len(points) >= 8  # 5, 10 (three seeds, two learning rates), 25, 100 % and its TTA
    for path in points:
        assert json.loads(path.read_text())["init_sha256"] == encoder, f"{path.name}: retrain it"
