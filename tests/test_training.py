"""Models, losses, augmentation, training with resume, evaluation and TTA on small data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from fer_utils.config import models_dir
from fer_utils.data import DataError, Dataset
from fer_utils.devices import set_threads
from fer_utils.evaluation import bootstrap_ci, bootstrap_gain_ci, predict, verdict
from fer_utils.experiment import (
    evaluate_saved,
    load_history,
    stale_reason,
    train_or_load,
    train_or_read_record,
)
from fer_utils.files import file_sha256
from fer_utils.inference import ModelError
from fer_utils.models import REGISTRY, build_model, save_for_inference
from fer_utils.runs import (
    EVAL_SPLITS,
    history_path,
    predictions_path,
    read_predictions,
    read_run,
    record_path,
    tta_label,
    tta_run_name,
    write_run,
)
from fer_utils.settings import PretrainConfig
from fer_utils.training import (
    FocalLoss,
    TrainConfig,
    augmenter,
    class_weights,
    make_dataset,
    recalibrate_batchnorm,
    stopping_starts,
    train,
)
from fer_utils.tta import TTA, TTA_SETS, tta_views


def three_splits() -> Dataset:
    """48 synthetic faces, 16 in each of Training, PublicTest and PrivateTest."""
    return dataclasses.replace(
        synthetic(48), splits=np.repeat(["Training", "PublicTest", "PrivateTest"], 16)
    )


def synthetic(n: int, seed: int = 0) -> Dataset:
    """Faces of noise whose label (0–3) is written as a bright 12×12 patch in one quadrant."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 120, (n, 48, 48)).astype(np.uint8)
    for k, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[k, 6 + 24 * r : 18 + 24 * r, 6 + 24 * c : 18 + 24 * c] = 250
    splits = np.array(["Training"] * (n - n // 4) + ["PublicTest"] * (n // 4))
    return Dataset(images, labels.astype(np.int64), splits, np.arange(n), "synthetic", "0")


FAST = dict(epochs=3, batch_size=32, augment="none", learning_rate=3e-3, patience=5)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_is_self_contained(name: str) -> None:
    model = build_model(name)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    out = model.predict(np.full((2, 48, 48, 1), 255.0, np.float32), verbose=0)
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5) and out.dtype == np.float32


def test_mixed_bfloat16_model_outputs_float32() -> None:
    model = build_model("five_layer", policy="mixed_bfloat16")
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"
    assert model.get_layer("conv1_conv").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


@pytest.mark.parametrize("precise_bn", [False, True])
def test_brief_training_beats_chance_clearly(tmp_path: Path, precise_bn: bool) -> None:
    data = synthetic(640)
    config = TrainConfig("five_layer", **FAST, precise_bn=precise_bn)
    result = train(config, data.split("Training"), data.split("PublicTest"), tmp_path, verbose=0)
    val = data.split("PublicTest")
    accuracy = (predict(result.model, val.images).argmax(1) == val.labels).mean()
    assert accuracy > 0.6  # chance is 0.25
    assert (tmp_path / "best.keras").is_file() and (tmp_path / "log.csv").is_file()


class InterruptAfterTwoEpochs(keras.callbacks.Callback):
    """Stops training as a Ctrl-C would, at the end of the second epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def interrupted_run(folder: Path) -> tuple[TrainConfig, Dataset, Dataset]:
    """A 4-epoch run in ``folder`` stopped after its second epoch; its config and data."""
    data = synthetic(256)
    train_set, val_set = data.split("Training"), data.split("PublicTest")
    config = TrainConfig("five_layer", **{**FAST, "epochs": 4, "schedule": "plateau"})
    with pytest.raises(KeyboardInterrupt):
        callbacks = (InterruptAfterTwoEpochs(),)
        train(config, train_set, val_set, folder, verbose=0, extra_callbacks=callbacks)
    return config, train_set, val_set


def test_resume_continues_epochs_and_optimizer_state(tmp_path: Path) -> None:
    config, train_set, val_set = interrupted_run(tmp_path)
    assert (tmp_path / "state").is_dir()
    resumed = train(config, train_set, val_set, tmp_path, verbose=0)
    assert resumed.epochs_run == 4  # the whole run: 2 before the interruption, 2 after
    steps_per_epoch = len(train_set) // config.batch_size
    assert resumed.optimizer_steps == 4 * steps_per_epoch  # the optimizer state came back too
    log = (tmp_path / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]][-2:] == ["2", "3"]


def test_a_resumed_run_keeps_the_best_model_from_before_the_interruption(tmp_path: Path) -> None:
    class Sabotage(keras.callbacks.Callback):
        """Zero the classifier before every validation: the resumed epochs all score worse."""

        def on_test_begin(self, logs=None):
            layer = self.model.get_layer("emotion")
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])

    config, train_set, val_set = interrupted_run(tmp_path)
    before = max(pd.read_csv(tmp_path / "log.csv")["val_accuracy"])
    resumed = train(config, train_set, val_set, tmp_path, verbose=0, extra_callbacks=(Sabotage(),))
    after = pd.read_csv(tmp_path / "log.csv")["val_accuracy"].iloc[-2:]
    assert after.max() < before  # the premise: nothing after the resume beats the old best
    accuracy = (predict(resumed.model, val_set.images).argmax(1) == val_set.labels).mean()
    assert accuracy == pytest.approx(before, abs=1e-6)


def test_running_a_finished_run_again_starts_a_fresh_log(tmp_path: Path) -> None:
    data = synthetic(128)
    train_set, val_set = data.split("Training"), data.split("PublicTest")
    config = TrainConfig("five_layer", **{**FAST, "epochs": 2})
    for _ in range(2):
        train(config, train_set, val_set, tmp_path, verbose=0)
    assert list(pd.read_csv(tmp_path / "log.csv")["epoch"]) == [0, 1]


def test_early_stopping_waits_for_the_cosine_schedule_to_decay(tmp_path: Path) -> None:
    data = synthetic(128)
    train_set, val_set = data.split("Training"), data.split("PublicTest")
    # Patience 0 stops at the first epoch without a new best; with a cosine schedule that
    # may happen only from epoch 4 of 6 on, so at least 4 epochs run whatever PublicTest does.
    config = TrainConfig(
        "five_layer", **{**FAST, "epochs": 6, "patience": 0, "learning_rate": 1e-12}
    )
    assert stopping_starts(config) == 4
    assert train(config, train_set, val_set, tmp_path / "cosine", verbose=0).epochs_run >= 4
    plateau = dataclasses.replace(config, schedule="plateau")
    assert stopping_starts(plateau) == 0
    assert train(plateau, train_set, val_set, tmp_path / "plateau", verbose=0).epochs_run < 4


def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 16)]
    p = rng.dirichlet(np.ones(7), 16).astype(np.float32)
    alpha = rng.uniform(0.5, 2, 7)
    focal = FocalLoss(alpha=alpha.tolist(), gamma=0.0, reduction=None)(y, p)
    expected = -(alpha[None] * y * np.log(p)).sum(axis=1)
    assert np.allclose(keras.ops.convert_to_numpy(focal), expected, rtol=1e-5)
    # gamma > 0 down-weights confident correct predictions
    confident = np.eye(7, dtype=np.float32)[[0]] * 0.9 + 0.1 / 7
    ce = FocalLoss(gamma=0.0, reduction=None)(np.eye(7)[[0]], confident)
    fl = FocalLoss(gamma=2.0, reduction=None)(np.eye(7)[[0]], confident)
    assert float(fl[0]) < 0.1 * float(ce[0])


def test_class_weights_for_a_known_label_vector() -> None:
    labels = np.array([0] * 6 + [1] * 3 + [2, 3, 4, 5, 6] * 3)
    weights = class_weights(labels)
    n = len(labels)
    assert np.allclose(weights, [n / (7 * 6), n / (7 * 3)] + [n / (7 * 3)] * 5)


@pytest.mark.parametrize("kind", ["light", "basic", "erasing", "strong", "mixup"])
def test_augmentation_keeps_shape_range_and_labels(kind: str) -> None:
    data = synthetic(64)
    y = np.eye(7, dtype=np.float32)[data.labels]
    x_batch, y_batch = next(iter(make_dataset(data.images, y, 32, kind, shuffle=False)))
    x_batch, y_batch = np.asarray(x_batch), np.asarray(y_batch)
    assert x_batch.shape == (32, 48, 48, 1) and x_batch.dtype == np.float32
    assert x_batch.min() >= 0 and x_batch.max() <= 255
    assert not np.array_equal(x_batch[..., 0], data.images[:32].astype(np.float32))
    assert np.allclose(y_batch.sum(axis=1), 1, atol=1e-5)
    if kind != "mixup":
        assert np.array_equal(y_batch, y[:32])


def test_unknown_augmentation_is_rejected() -> None:
    with pytest.raises(ValueError, match="augmentation"):
        augmenter("rotate-a-lot")


def test_saved_model_reloads_with_the_same_predictions(tmp_path: Path) -> None:
    model = build_model("resnet_lite")
    faces = synthetic(8).images.astype(np.float32)
    save_for_inference(model, tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert np.allclose(predict(model, faces), predict(loaded, faces), atol=1e-6)


def test_tta_views_and_flip_invariant_model() -> None:
    faces = synthetic(4).images
    views = list(tta_views(faces))
    assert len(views) == 10 and all(v.shape == faces.shape for v in views)
    assert np.array_equal(views[1], faces[:, :, ::-1])
    assert np.array_equal(views[2][:, 2:, :], faces[:, :-2, :])  # shifted down by two pixels

    inputs = keras.Input((48, 48, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)  # invariant to flips, not to shifts
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(mean))
    plain = predict(model, faces)
    flipped_only = np.mean(
        [model.predict(v[..., None].astype(np.float32), verbose=0) for v in views[:2]], 0
    )
    assert np.allclose(plain, flipped_only, atol=1e-6)


def test_bootstrap_interval_contains_the_accuracy() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 500)
    predicted = np.where(rng.random(500) < 0.7, labels, (labels + 1) % 7)
    low, high = bootstrap_ci(labels, predicted)
    accuracy = (labels == predicted).mean()
    assert low < accuracy < high and 0.02 < high - low < 0.12


def test_verdict_says_where_an_interval_lies_against_a_reference() -> None:
    assert verdict(0.01, 0.03) == "above" and verdict(-0.03, -0.01) == "below"
    assert verdict(-0.01, 0.01) == "within noise" == verdict(0.0, 0.02)  # touching 0 is noise
    assert verdict(62.9, 66.0, 66.3) == "below" and verdict(62.9, 66.0, 64.0) == "within noise"
    assert verdict(-0.05, -0.02, words=("lower", "higher")) == "lower"


def test_paired_gain_interval_sees_a_small_consistent_improvement() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 2000)
    baseline = np.where(rng.random(2000) < 0.6, labels, (labels + 1) % 7)
    wrong = np.flatnonzero(baseline != labels)
    better = baseline.copy()
    better[wrong[:60]] = labels[wrong[:60]]  # fixes 60 faces (3 points), breaks none
    low, high = bootstrap_gain_ci(labels, better, baseline)
    assert 0 < low < 0.03 < high < 0.05
    # The unpaired intervals overlap: only pairing shows the gain is real.
    assert bootstrap_ci(labels, better)[0] < bootstrap_ci(labels, baseline)[1]


def test_train_config_rejects_unknown_choices() -> None:
    with pytest.raises(ValueError, match="loss"):
        TrainConfig("five_layer", loss="hinge")
    assert (
        json.loads(json.dumps(dataclasses.asdict(TrainConfig("five_layer"))))["model"]
        == "five_layer"
    )


def test_precise_batchnorm_recovers_the_data_statistics_and_spares_frozen_layers() -> None:
    rng = np.random.default_rng(0)
    # each face is flat, so the pooled feature is its brightness: mean 100, sd 20
    faces = np.clip(rng.normal(100, 20, 4096), 0, 255)[:, None, None] * np.ones((1, 48, 48))
    pooled = keras.layers.GlobalAveragePooling2D()
    inputs = keras.Input((48, 48, 1))
    live, frozen = keras.layers.BatchNormalization(), keras.layers.BatchNormalization()
    frozen.trainable = False
    model = keras.Model(inputs, [live(pooled(inputs)), frozen(pooled(inputs))])
    assert float(live.moving_mean[0]) == 0.0  # a fresh layer: far from the data's statistics
    assert recalibrate_batchnorm(model, faces.astype(np.float32), batches=8) == 1
    assert float(live.moving_mean[0]) == pytest.approx(faces.mean(), rel=0.02)
    assert float(live.moving_variance[0]) == pytest.approx(faces.var(), rel=0.1)
    assert live.momentum == 0.99
    assert float(frozen.moving_mean[0]) == 0.0 and float(frozen.moving_variance[0]) == 1.0


def test_affine_tta_views_turn_about_the_centre_and_keep_the_original() -> None:
    faces = synthetic(4).images
    quarter_turn = TTA(shifts=((0, 0),), angles=(90.0,), flip=False)
    (turned,) = tta_views(faces, quarter_turn)
    assert np.array_equal(turned, np.rot90(faces, axes=(1, 2)))  # counter-clockwise, exactly
    shifted = list(tta_views(faces))[2]
    assert np.array_equal(shifted[:, :2], np.repeat(faces[:, :1], 2, axis=1))  # edge repeated
    views = list(tta_views(faces[..., None], TTA_SETS["affine"]))
    assert len(views) == len(TTA_SETS["affine"]) == 90
    assert all(v.shape == (4, 48, 48, 1) for v in views)
    assert sum(np.array_equal(v[..., 0], faces) for v in views) == 1  # the identity, once


def test_tta_record_names_and_labels() -> None:
    assert tta_run_name("x", "shifts") == "x-tta" and tta_run_name("x", "affine") == "x-tta-affine"
    assert tta_label("shifts") == " + TTA" and tta_label("affine") == " + TTA affine"
    names = {tta_run_name("fast_cnn-ls-cpu", tta) for tta in TTA_SETS}
    assert len(names) == len(TTA_SETS) and "fast_cnn-ls-cpu" not in names  # one file per set


def test_a_finished_run_is_evaluated_again_with_another_tta_set() -> None:
    noise = synthetic(48)
    splits = np.repeat(["Training", "PublicTest", "PrivateTest"], 16)
    data = dataclasses.replace(noise, splits=splits)
    model = build_model("five_layer")
    save_for_inference(model, models_dir() / "tiny.keras")
    test = data.split("PrivateTest")
    predictions = {s: (data.split(s).labels, predict(model, data.split(s).images))
                   for s in ("PublicTest", "PrivateTest")}  # fmt: skip
    details = {"config": {"seed": 0, "label_fraction": 1.0}, "epochs_run": 3}
    write_run("tiny", "trained", "five_layer", "train …", "cpu", data.sha256, 12.5, predictions,
              details)  # fmt: skip

    record = evaluate_saved("tiny", data, "affine", "evaluate …")
    assert record == read_run("tiny-tta-affine")
    assert record.run_name == "tiny-tta-affine" and record.model == "five_layer + TTA affine"
    assert (record.kind, record.tta, record.trained_by) == ("tta", "affine", "tiny")
    assert (record.train_seconds, record.details["epochs_run"]) == (12.5, 3)
    assert record.config == details["config"] and record.architecture == "five_layer"
    with np.load(predictions_path("tiny-tta-affine")) as stored:
        stored_probabilities = stored["PrivateTest_probabilities"]
    expected = predict(model, test.images, tta="affine")
    np.testing.assert_allclose(stored_probabilities, expected, atol=1e-6)
    with pytest.raises(DataError, match="trained on data"):
        evaluate_saved("tiny", dataclasses.replace(data, sha256="other"), "affine", "…")
    with pytest.raises(ModelError, match="TTA evaluation"):
        evaluate_saved("tiny-tta-affine", data, "shifts", "…")


def test_a_curve_reads_finished_records_and_trains_only_the_missing_ones() -> None:
    data = three_splits()
    config = TrainConfig("five_layer", {}, **{**FAST, "epochs": 1})
    first = train_or_read_record(config, "point", data, "quick", "train …")
    assert first.details["epochs_run"] == 1 and first.metrics["PrivateTest"]["n"] == 16
    assert first.kind == "trained" and first.config["epochs"] == 1
    (models_dir() / "point.keras").unlink()  # the record is enough: the model is not needed
    longer = dataclasses.replace(config, epochs=2)
    assert train_or_read_record(longer, "point", data, "quick", "train …") == first
    assert not (models_dir() / "point.keras").exists()  # read, not trained again
    again = train_or_read_record(longer, "point", data, "quick", "train …", reuse=False)
    assert again.details["epochs_run"] == 2 and (models_dir() / "point.keras").is_file()


def test_a_run_takes_its_profiles_tta_set_and_a_retrained_one_replaces_its_old_records(
    caplog,
) -> None:
    data = three_splits()
    config = TrainConfig("five_layer", {}, **{**FAST, "epochs": 1})
    train_or_load(config, "twice", data, "cpu", "train …")  # cpu: the shifts set, "-tta"
    assert read_run("twice-tta").tta == "shifts"  # and another run that shares the prefix:
    write_run("twice-tta-x", "trained", "five_layer", "train …", "cpu", data.sha256, 1.0,
              read_predictions("twice"), {})  # fmt: skip
    again = train_or_load(config, "twice", data, "quick", "train …", reuse=False)
    assert again.record.profile == "quick" and read_run("twice-tta-flip").trained_by == "twice"
    assert not predictions_path("twice-tta").exists(), "the replaced model's evaluation stays"
    assert not record_path("twice-tta").exists()
    assert "removed twice-tta.json" in caplog.text
    assert read_run("twice-tta-x").kind == "trained"  # not an evaluation of "twice": kept
    train_or_load(config, "twice", data, "quick", "train …", reuse=False, tta="shifts")
    assert read_run("twice-tta").tta == "shifts"  # a TTA set asked for beats the profile's


def test_a_run_keeps_its_log_beside_the_record_and_is_read_without_its_model() -> None:
    data = three_splits()
    config = TrainConfig("five_layer", {}, **{**FAST, "epochs": 2})
    trained = train_or_load(config, "curve", data, "quick", "train …")
    kept = pd.read_csv(history_path("curve"))  # committed with the record, unlike checkpoints/
    assert list(kept.epoch) == [0, 1] and "val_accuracy" in kept
    pd.testing.assert_frame_equal(load_history("curve"), kept)
    assert trained.model.output_shape == (None, 7)
    (models_dir() / "curve.keras").unlink()  # a fresh clone: record, predictions and log only
    again = train_or_load(config, "curve", data, "quick", "train …", need_model=False)
    assert again.record == trained.record and not (models_dir() / "curve.keras").exists()
    pd.testing.assert_frame_equal(again.history, kept)
    np.testing.assert_array_equal(
        again.probabilities["PrivateTest"], trained.probabilities["PrivateTest"]
    )
    with pytest.raises(ModelError, match=r"curve\.keras is missing"):
        again.model  # noqa: B018 (loading it is the point)
    train_or_load(config, "curve", data, "quick", "train …")  # needs the model: trains again
    assert (models_dir() / "curve.keras").is_file()


def test_a_pretraining_record_is_reused_for_the_same_data_and_seed_only(caplog) -> None:
    data = three_splits()
    probe = {s: (data.split(s).labels, np.full((16, 7), 1 / 7)) for s in EVAL_SPLITS}
    settings = {"model": "fast_cnn", "seed": 13}
    write_run("ssl", "pretrained", "probe", "…", "quick", data.sha256, 1.0, probe,
              {"pretrain_config": settings})  # fmt: skip
    config = PretrainConfig("fast_cnn", {}, epochs=1, batch_size=8, seed=13)
    assert read_run("ssl").config == settings  # a SimCLR run's settings are its config
    assert stale_reason("ssl", config, data, "quick") is None
    assert train_or_read_record(config, "ssl", data, "quick", "…") == read_run("ssl")
    reseeded = dataclasses.replace(config, seed=14)
    assert stale_reason("ssl", reseeded, data, "quick") == "its record has another seed"


def test_a_record_names_the_encoder_and_teacher_it_started_from_by_hash(tmp_path) -> None:
    """A fine-tuned run or a student is tied to the very file it started or learnt from, which
    its command names only by path (a teacher file written again differs)."""
    data = three_splits()
    config = TrainConfig("five_layer", {}, **{**FAST, "epochs": 1})
    start = train_or_load(config, "start", data, "quick", "train …")
    assert "init_sha256" not in start.record.details
    init = models_dir() / "start.keras"
    train_part = data.split("Training")
    teacher = tmp_path / "teacher.npz"
    probabilities = np.random.default_rng(0).dirichlet(np.ones(7), len(train_part))
    np.savez(teacher, source_index=train_part.source_index, probabilities=probabilities)
    student = dataclasses.replace(
        config, init=str(init), soft_targets="teacher", teacher=str(teacher)
    )
    details = train_or_load(student, "student", data, "quick", "train …").record.details
    assert details["init_sha256"] == file_sha256(init)
    assert details["teacher_sha256"] == file_sha256(teacher)


def test_a_run_that_must_train_from_a_missing_start_says_which_file() -> None:
    data = three_splits()
    config = TrainConfig("five_layer", {}, **{**FAST, "epochs": 1}, init="models/gone.keras")
    with pytest.raises(ModelError, match=r"starts from models/gone\.keras, which is not on"):
        train_or_read_record(config, "tuned", data, "quick", "train …")


def test_changing_threads_once_tensorflow_runs_warns_instead_of_failing() -> None:
    keras.ops.add(1.0, 1.0)  # TensorFlow's thread pools now exist
    wanted = tf.config.threading.get_intra_op_parallelism_threads() + 3
    with pytest.warns(UserWarning, match="already running"):
        set_threads(wanted)


def test_ten_crop_tta_averages_the_four_corner_and_centre_crops_and_their_mirrors() -> None:
    model = build_model("vgg", width=0.125, crop=40)  # sees the central 40×40 pixels
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    crops = []
    for top, left in ((4, 4), (0, 0), (0, 8), (8, 0), (8, 8)):  # centre, then the corners
        crop = faces[:, top : top + 40, left : left + 40]
        padded = np.pad(crop, ((0, 0), (4, 4), (4, 4)), mode="edge")  # its centre is the crop
        crops += [padded, padded[:, :, ::-1]]
    expected = np.mean([predict(model, view) for view in crops], axis=0)
    np.testing.assert_allclose(predict(model, faces, tta="ten_crop"), expected, atol=1e-5)


def test_a_saved_run_is_reused_only_for_the_same_data_subset_and_seed(caplog) -> None:
    data = three_splits()
    config = TrainConfig("five_layer", {}, **{**FAST, "epochs": 1})
    first = train_or_read_record(config, "point", data, "quick", "train …")
    assert train_or_read_record(config, "point", data, "quick", "train …") == first  # reused
    other_faces = dataclasses.replace(data, labels=np.roll(data.labels, 1))  # another subset
    again = train_or_read_record(config, "point", other_faces, "quick", "train …")
    assert "evaluated on other PublicTest faces" in caplog.text and again != first
    reseeded = dataclasses.replace(config, seed=1)
    train_or_read_record(reseeded, "point", other_faces, "quick", "train …")
    assert "another seed" in caplog.text
    assert read_run("point").config["seed"] == 1
