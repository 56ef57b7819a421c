"""Explanations on a synthetic task whose answer is known: noise faces whose class is decided only
by a bright square, so a faithful map must point at the square."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from keras import layers
from scipy.ndimage import sobel

from fer_utils import explain as ex
from fer_utils.data import load_fer2013
from fer_utils.models import build_model, dtype_policy
from fer_utils.preprocessing import correct
from fer_utils.transfer import build_transfer

from conftest import ROOT, SAMPLE_CSV

PATCH = (slice(8, 20), slice(8, 20))  # class 1 iff this square is bright; class 0 has none
N_TRAIN = 1200
REGION_NAMES = [*ex.REGIONS, "other"]


def synthetic_faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform noise faces (80–170) labelled 0 or 1; class-1 faces carry a bright (220–255)
    12×12 square at :data:`PATCH`, and nothing else tells the classes apart."""
    rng = np.random.default_rng(seed)
    faces = rng.uniform(80, 170, (n, 48, 48, 1)).astype(np.float32)
    labels = np.arange(n) % 2
    faces[labels == 1, PATCH[0], PATCH[1]] = rng.uniform(220, 255, (n // 2, 12, 12, 1))
    return faces, labels


def tiny_model() -> keras.Model:
    """The repo's model conventions at toy size: raw 0–255 faces in, softmax over 7 classes out,
    the last block conv–BN–ReLU as in :mod:`fer_utils.models` (so the CAM methods must read its
    ReLU, not its convolution). Inputs are centred (not 0–1) and the first blocks have no
    BatchNorm, so that the noise does not light up every ReLU; the global max-pool lets the net
    answer "is there a bright square?" without averaging in the noise."""
    faces = keras.Input((48, 48, 1), name="faces")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="scale")(faces)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv3_conv")(x)
    x = layers.BatchNormalization(name="conv3_bn")(x)
    x = layers.ReLU(name="conv3_relu")(x)
    x = layers.GlobalMaxPooling2D(name="max")(x)
    return keras.Model(faces, layers.Dense(7, activation="softmax", name="emotion")(x))


def nested(model: keras.Model) -> keras.Model:
    """``model`` used as a layer inside another model, as transfer backbones and the network
    behind an illumination correction are."""
    faces = keras.Input((48, 48, 1), name="outer_faces")
    return keras.Model(faces, model(layers.Identity(name="outer")(faces)), name="outer")


@pytest.fixture(scope="module")
def trained() -> keras.Model:
    keras.utils.set_random_seed(0)
    faces, labels = synthetic_faces(N_TRAIN, seed=0)
    model = tiny_model()
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["acc"])
    history = model.fit(faces, labels, batch_size=32, epochs=3, verbose=0)
    assert history.history["acc"][-1] > 0.95, "the toy model did not learn the task"
    return model


@pytest.fixture(scope="module")
def patch_faces() -> np.ndarray:
    """Eight held-out class-1 faces."""
    faces, labels = synthetic_faces(16, seed=1)
    return faces[labels == 1]


def share_inside(maps: np.ndarray, margin: int) -> np.ndarray:
    """Share of each map's mass inside the patch grown by ``margin`` pixels."""
    rows, cols = (slice(s.start - margin, s.stop + margin) for s in PATCH)
    return maps[:, rows, cols].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


def edge_maps(model, faces, classes) -> np.ndarray:
    """A fake "explanation" that ignores the model: the Sobel gradient magnitude of the face."""
    faces = ex.as_batch(faces)[..., 0]
    return np.hypot(sobel(faces, axis=1), sobel(faces, axis=2))


def seeded_explain(model, faces, method, **options) -> np.ndarray:
    """:func:`ex.explain` with the global RNGs seeded (SmoothGrad's noise is NumPy's)."""
    keras.utils.set_random_seed(0)
    return ex.explain(model, faces, method, **options)


def hand_written_gradcam(model: keras.Model, faces: np.ndarray, cls: int, layer: str) -> np.ndarray:
    """Grad-CAM as keras-io writes it: the class logit's gradient with respect to ``layer``'s
    feature maps, averaged per channel, weighs the maps; ReLU; bilinear upsampling."""
    logits = keras.models.clone_model(model)
    logits.set_weights(model.get_weights())
    logits.layers[-1].activation = None
    grad_model = keras.Model(logits.inputs, [logits.get_layer(layer).output, logits.output])
    with tf.GradientTape() as tape:
        features, scores = grad_model(tf.constant(faces))
        score = scores[:, cls]
    weights = tf.reduce_mean(tape.gradient(score, features), axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    return tf.image.resize(cam[..., None], faces.shape[1:3]).numpy()[..., 0]


def test_the_toy_model_sees_the_patch(trained, patch_faces):
    assert (ex.predicted_classes(trained, patch_faces) == 1).all()


def test_cam_layer_is_the_last_blocks_output(trained):
    assert ex.cam_layer(trained) == "conv3_relu"
    assert ex.cam_layer(build_model("five_layer", correction="clahe")) == "conv3_relu"
    with pytest.raises(ValueError, match="no Conv2D"):
        ex.cam_layer(keras.Sequential([keras.Input((4,)), layers.Dense(2)]))


def test_library_gradcam_matches_a_hand_written_one(trained, patch_faces):
    faces = np.concatenate([patch_faces[:4], synthetic_faces(8, seed=2)[0][::2]])  # both classes
    for cls in (0, 1):
        library = ex.explain(trained, faces, "gradcam", classes=cls)
        reference = ex.normalise(hand_written_gradcam(trained, faces, cls, "conv3_relu"))
        for mine, theirs in zip(library, reference, strict=True):
            assert np.corrcoef(mine.ravel(), theirs.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("method", ex.METHODS)
def test_maps_put_most_mass_on_the_patch(trained, patch_faces, method):
    maps = ex.explain(trained, patch_faces, method, classes=1)
    # The coarse methods (a 12×12 CAM grid, 8-px occlusion squares) get a 4-px margin, the rest
    # 2 px; a map blind to the patch puts its area share there (11 % or 17 %), and the random
    # map about that much.
    margin = 4 if method in (*ex.CAM_METHODS, "occlusion") else 2
    uniform = share_inside(np.ones((1, 48, 48)), margin)[0]
    assert uniform < 0.2
    assert share_inside(ex.random_maps(len(patch_faces)), margin).mean() < 1.5 * uniform
    assert share_inside(maps, margin).mean() > max(0.5, 3 * uniform)
    assert share_inside(maps, margin).min() > 2 * uniform


@pytest.mark.parametrize("method", ex.METHODS)
def test_every_method_gives_one_normalised_map_per_face(trained, patch_faces, method):
    options = {
        "scorecam": {"channels": 4},
        "smoothgrad": {"samples": 4},
        "integrated_gradients": {"steps": 8},
        "occlusion": {"patch": 12, "stride": 12},
    }.get(method, {"num_samples": 50} if method.startswith("lime") else {})
    faces = patch_faces[:2, ..., 0].astype(np.uint8)  # (N, 48, 48) uint8 is accepted too
    maps = ex.explain(trained, faces, method, **options)
    assert maps.shape == (2, 48, 48)
    assert maps.dtype == np.float32
    assert np.isfinite(maps).all()
    assert maps.min() >= 0
    np.testing.assert_array_equal(maps.max(axis=(1, 2)), 1.0)  # none blank
    assert (maps.std(axis=(1, 2)) > 0.05).all()  # none constant


def test_scorecam_on_the_shipped_model_is_not_blank():
    """The bug this guards against: on a conv–BN–ReLU net, Score-CAM read the raw convolution,
    negative almost everywhere, and gave all-zero maps."""
    model = keras.saving.load_model(ROOT / "models" / "default.keras", safe_mode=True)
    faces = load_fer2013(SAMPLE_CSV).images[:4]
    maps = ex.explain(model, faces, "scorecam")
    np.testing.assert_array_equal(maps.max(axis=(1, 2)), 1.0)
    assert (maps.std(axis=(1, 2)) > 0.05).all()


@pytest.mark.parametrize("method", ex.METHODS)
def test_a_nested_model_gets_the_same_maps(trained, patch_faces, method):
    options = {"num_samples": 100} if method.startswith("lime") else {}
    outer = nested(trained)
    assert ex.cam_layer(outer) == "conv3_relu"
    expected = seeded_explain(trained, patch_faces[:3], method, **options)
    np.testing.assert_allclose(
        seeded_explain(outer, patch_faces[:3], method, **options), expected, atol=1e-4
    )


def test_an_inner_layer_can_be_named(trained, patch_faces):
    inner = seeded_explain(nested(trained), patch_faces[:2], "gradcam", classes=1, layer="conv2")
    np.testing.assert_allclose(
        inner, seeded_explain(trained, patch_faces[:2], "gradcam", classes=1, layer="conv2")
    )


@pytest.fixture(scope="module")
def corrected_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("five_layer", correction="clahe")


@pytest.mark.parametrize("method", ex.METHODS)
def test_a_corrected_model_is_explained_behind_its_correction(corrected_model, patch_faces, method):
    """``build_model(..., correction=...)`` nests the network behind a NumPy correction, which
    has no gradient: every method explains that network, shown the corrected faces."""
    options = {"num_samples": 50} if method.startswith("lime") else {}
    network = corrected_model.layers[-1]
    corrected = correct(patch_faces[:2], "clahe").astype(np.float32)
    maps = seeded_explain(corrected_model, patch_faces[:2], method, classes=1, **options)
    expected = seeded_explain(network, corrected, method, classes=1, **options)
    np.testing.assert_allclose(maps, expected, atol=1e-4)
    assert (maps.std(axis=(1, 2)) > 0.01).all()


def test_a_transfer_model_is_explained_inside_its_backbone(patch_faces):
    keras.utils.set_random_seed(0)
    model = build_transfer("mobilenetv2", size=48, weights=None)
    assert ex.cam_layer(model) == "out_relu"
    for method, options in (("gradcam", {}), ("scorecam", {"channels": 8})):
        maps = ex.explain(model, patch_faces[:2], method, **options)
        assert maps.shape == (2, 48, 48)
        np.testing.assert_array_equal(maps.max(axis=(1, 2)), 1.0)


def test_gradcam_deletes_faster_than_random(trained, patch_faces):
    classes = np.ones(len(patch_faces), int)
    gradcam = ex.explain(trained, patch_faces, "gradcam", classes)
    random = ex.random_maps(len(patch_faces), seed=0)
    for perturbation in ("black", "grey"):
        deletion, baseline = (
            ex.deletion_auc(trained, patch_faces, maps, classes, perturbation=perturbation)
            for maps in (gradcam, random)
        )
        assert deletion.shape == (len(patch_faces),)
        assert deletion.mean() < 0.5 * baseline.mean(), perturbation
    # Inserting the evidence first brings the class back at once (the blurred start of
    # insertion still shows a bright blob here, so it cannot tell maps apart on this task).
    insertion = ex.insertion_auc(trained, patch_faces, gradcam, classes)
    assert (insertion <= 1).all()
    assert (insertion > deletion + 0.5).all()


def test_perturbations_remove_every_pixel(patch_faces):
    faces = ex.as_batch(patch_faces)
    np.testing.assert_array_equal(ex.PERTURBATIONS["black"](faces), 0)
    np.testing.assert_array_equal(ex.PERTURBATIONS["grey"](faces), ex.GREY)
    np.testing.assert_array_equal(ex.PERTURBATIONS["blur"](faces), ex.blurred(faces))
    with pytest.raises(KeyError):
        ex.deletion_auc(None, faces, faces[..., 0], np.ones(len(faces), int), perturbation="pink")


def test_versus_random_pairs_the_faces():
    """Faces differ far more than the methods do: a method 0.02 below the random map on every
    face beats it, although the two means' own intervals overlap."""
    rng = np.random.default_rng(0)
    random_auc = rng.uniform(0.1, 0.9, 200)
    better = random_auc - 0.02
    assert ex.versus_random(better, random_auc, lower_is_better=True) == pytest.approx(
        (-0.02, -0.02, -0.02, True, False)
    )
    worse = ex.versus_random(better, random_auc, lower_is_better=False)
    assert worse.loses_random and not worse.beats_random
    noisy = random_auc + rng.normal(0, 0.05, 200)
    comparison = ex.versus_random(noisy, random_auc, lower_is_better=True)
    assert comparison.low < 0 < comparison.high
    assert not comparison.beats_random and not comparison.loses_random


def test_faithfulness_table(trained, patch_faces):
    table = ex.faithfulness_table(
        trained, patch_faces, methods=("gradcam", "saliency"), randomisation_faces=4
    )
    assert table.index.name == "method"
    assert len(table) == 3 * len(ex.PERTURBATIONS)
    assert list(table.perturbation.unique()) == list(ex.PERTURBATIONS)
    for kind in ("deletion", "insertion"):
        columns = ("auc", "ci", "vs_random", "beats_random", "loses_random")
        assert {f"{kind}_{c}" for c in columns} <= {*table}
        assert (table[f"{kind}_vs_random_low"] <= table[f"{kind}_vs_random"]).all()
        assert (table[f"{kind}_vs_random"] <= table[f"{kind}_vs_random_high"]).all()
    random = table.loc["random"]
    assert (random.deletion_vs_random == 0).all() and not random.deletion_beats_random.any()
    assert random.randomisation_spearman.isna().all()
    gradcam = table.loc["gradcam"].set_index("perturbation")
    assert gradcam.loc[["black", "grey"], "deletion_beats_random"].all()
    difference = gradcam.deletion_auc - table.loc["random"].set_index("perturbation").deletion_auc
    np.testing.assert_allclose(gradcam.deletion_vs_random, difference, atol=2e-4)


def test_an_interrupted_faithfulness_table_resumes_from_its_cache(
    trained, patch_faces, tmp_path, monkeypatch
):
    """Each finished method is kept in the cache: after a failure in the middle only the
    methods not finished are computed again, and the table equals one made in one go; other
    settings are computed afresh."""
    options = dict(methods=("gradcam", "saliency"), randomisation_faces=4)
    plain = ex.faithfulness_table(trained, patch_faces, cache=tmp_path / "in-one-go", **options)
    calls, real, killed = [], ex.explain, []

    def failing_on_saliency(model, faces, method, *args, **kwargs):
        calls.append(method)
        if method == "saliency" and not killed:
            killed.append(method)
            raise RuntimeError("killed")  # once, e.g. the session ends
        return real(model, faces, method, *args, **kwargs)

    monkeypatch.setattr(ex, "explain", failing_on_saliency)
    with pytest.raises(RuntimeError, match="killed"):
        ex.faithfulness_table(trained, patch_faces, cache=tmp_path, **options)
    assert calls == ["gradcam", "gradcam", "gradcam", "saliency"]  # maps, trained, randomised
    calls.clear()
    resumed = ex.faithfulness_table(trained, patch_faces, cache=tmp_path, **options)
    assert "gradcam" not in calls and "saliency" in calls  # gradcam read back
    pd.testing.assert_frame_equal(resumed, plain)
    calls.clear()
    ex.faithfulness_table(trained, patch_faces, cache=tmp_path, **options)
    assert not calls  # all read back
    ex.faithfulness_table(trained, patch_faces, cache=tmp_path, seed=1, **options)
    assert set(calls) == {"gradcam", "saliency"}  # another seed: computed afresh


def test_randomisation_check_exposes_a_model_blind_map(trained, patch_faces):
    edges = ex.randomisation_check(trained, patch_faces, edge_maps)
    np.testing.assert_allclose(edges, 1.0)
    for method in ("gradcam", "saliency"):
        rho = ex.randomisation_check(trained, patch_faces, method)
        assert rho.shape == (len(patch_faces),)
        # Random conv nets also react to the bright square, so not ~0; but clearly below 1.
        assert np.nanmean(rho) < 0.8, method


def test_layer_is_for_cam_methods_only(trained, patch_faces):
    early = ex.explain(trained, patch_faces[:2], "gradcam", classes=1, layer="conv1")
    assert early.shape == (2, 48, 48)
    assert not np.allclose(early, ex.explain(trained, patch_faces[:2], "gradcam", classes=1))
    with pytest.raises(ValueError, match="takes no layer"):
        ex.explain(trained, patch_faces[:2], "saliency", layer="conv1")


def test_float32_copy_matches_a_mixed_precision_model(patch_faces):
    with dtype_policy("mixed_bfloat16"):
        mixed = tiny_model()
    copy = ex.float32_copy(mixed)
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    expected = mixed.predict(patch_faces, verbose=0)
    np.testing.assert_allclose(copy.predict(patch_faces, verbose=0), expected, atol=0.02)
    assert ex.float32_copy(copy) is copy


def test_region_shares_sum_to_one():
    masks = ex.region_masks()
    assert sum(mask.astype(int) for mask in masks.values()).max() == 1  # disjoint
    shares = ex.region_shares(ex.random_maps(5))
    assert shares.shape == (5, 5)
    assert list(shares.columns) == REGION_NAMES
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    mouth_only = np.zeros((1, 48, 48), np.float32)
    mouth_only[0, 36, 24] = 1
    assert ex.region_shares(mouth_only).loc[0, "mouth"] == 1


def test_region_ratios_are_one_for_a_uniform_map():
    ratios = ex.region_ratios(np.ones((4, 48, 48)))
    assert list(ratios.columns) == ["class", "region", "ratio", "low", "high"]
    assert list(ratios.region) == REGION_NAMES
    assert set(ratios["class"]) == {"all"}
    np.testing.assert_allclose(ratios[["ratio", "low", "high"]], 1.0)


def test_region_ratios_single_out_the_mouth():
    rng = np.random.default_rng(0)
    maps = rng.random((6, 48, 48)) * 0.1
    maps[:, ex.REGIONS["mouth"][0], ex.REGIONS["mouth"][1]] += 1
    blank = np.zeros((1, 48, 48))  # no mass: left out, not NaN
    ratios = ex.region_ratios(np.concatenate([maps, blank]), classes=[3, 3, 3, 4, 4, 4, 4])
    ratios = ratios.set_index(["class", "region"])
    assert list(ratios.index.unique("class")) == ["happy", "sad"]
    assert ratios.notna().all().all()
    for emotion in ("happy", "sad"):
        assert ratios.loc[(emotion, "mouth"), "low"] > 5
        assert (ratios.loc[emotion].drop("mouth").high < 0.5).all()


def test_lime_maps_are_signed_with_top_superpixels(trained, patch_faces):
    lime = ex.lime_maps(trained, patch_faces[:4], "lime_felzenszwalb", classes=1, top_k=3)
    assert lime.weights.shape == lime.top.shape == lime.segments.shape == (4, 48, 48)
    assert lime.weights.min() < 0 < lime.weights.max()  # evidence against the class too
    for weights, top, segments in zip(lime.weights, lime.top, lime.segments, strict=True):
        assert set(np.unique(top)) <= {-1, 0, 1}
        assert 1 <= len(np.unique(segments[top != 0])) <= 3
        np.testing.assert_array_equal(np.sign(weights[top != 0]), top[top != 0])
        # The strongest superpixel speaks for the class and lies on the patch.
        strongest = segments == segments.flat[np.abs(weights).argmax()]
        assert weights[strongest].max() > 0
        assert strongest[PATCH].mean() > 0.5


def test_lime_region_weights_per_segmentation(trained, patch_faces):
    weights = ex.lime_region_weights(trained, patch_faces[:4], classes=1, num_samples=200)
    assert list(weights.columns) == ["method", "class", "region", "weight", "low", "high"]
    assert list(weights.method.unique()) == list(ex.SEGMENTATIONS)
    assert set(weights["class"]) == {"disgust"}  # class 1
    assert (weights.low <= weights.weight).all() and (weights.weight <= weights.high).all()
    # The patch covers part of the brows' box and none of the mouth's.
    by_region = weights.set_index(["method", "region"]).weight
    for method in ex.SEGMENTATIONS:
        assert by_region[method, "brows"] > by_region[method, "mouth"] + 0.01, method
