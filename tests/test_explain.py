"""Explanations on a synthetic task whose answer is known: noise faces whose class is decided only
by a bright square, so a faithful map must point at the square."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import layers
from scipy.ndimage import sobel

from fer_utils import explain as ex
from fer_utils.models import dtype_policy

PATCH = (slice(8, 20), slice(8, 20))  # class 1 iff this square is bright; class 0 has none
N_TRAIN = 1200


def synthetic_faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform noise faces (80–170) labelled 0 or 1; class-1 faces carry a bright (220–255)
    12×12 square at :data:`PATCH`, and nothing else tells the classes apart."""
    rng = np.random.default_rng(seed)
    faces = rng.uniform(80, 170, (n, 48, 48, 1)).astype(np.float32)
    labels = np.arange(n) % 2
    faces[labels == 1, PATCH[0], PATCH[1]] = rng.uniform(220, 255, (n // 2, 12, 12, 1))
    return faces, labels


def tiny_model() -> keras.Model:
    """The repo's model conventions at toy size: raw 0–255 faces in, softmax over 7 classes out.
    Inputs are centred (not 0–1) so that the noise does not light up every ReLU, and the global
    max-pool lets the net answer "is there a bright square?" without averaging in the noise."""
    faces = keras.Input((48, 48, 1), name="faces")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="scale")(faces)
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.GlobalMaxPooling2D(name="max")(x)
    return keras.Model(faces, layers.Dense(7, activation="softmax", name="emotion")(x))


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


def test_the_toy_model_sees_the_patch(trained, patch_faces):
    assert (ex.predicted_classes(trained, patch_faces) == 1).all()


@pytest.mark.parametrize(("method", "margin"), [("gradcam", 4), ("saliency", 1)])
def test_maps_put_most_mass_on_the_patch(trained, patch_faces, method, margin):
    maps = ex.explain(trained, patch_faces, method, classes=np.ones(len(patch_faces), int))
    # The (grown) patch is 8–17 % of the face; a map blind to it would put about that much there.
    assert share_inside(maps, margin).mean() > 0.5
    assert share_inside(ex.random_maps(len(patch_faces)), margin).mean() < 0.2


def test_gradcam_deletes_faster_than_random(trained, patch_faces):
    classes = np.ones(len(patch_faces), int)
    gradcam = ex.explain(trained, patch_faces, "gradcam", classes)
    random = ex.random_maps(len(patch_faces), seed=0)
    deletion = ex.deletion_auc(trained, patch_faces, gradcam, classes)
    assert deletion.shape == (len(patch_faces),)
    assert deletion.mean() < 0.5 * ex.deletion_auc(trained, patch_faces, random, classes).mean()
    # Inserting the evidence first brings the class back at once (the blurred start of
    # insertion still shows a bright blob here, so it cannot tell maps apart on this task).
    insertion = ex.insertion_auc(trained, patch_faces, gradcam, classes)
    assert (insertion <= 1).all()
    assert (insertion > deletion + 0.5).all()


def test_randomisation_check_exposes_a_model_blind_map(trained, patch_faces):
    edges = ex.randomisation_check(trained, patch_faces, edge_maps)
    np.testing.assert_allclose(edges, 1.0)
    for method in ("gradcam", "saliency"):
        rho = ex.randomisation_check(trained, patch_faces, method)
        assert rho.shape == (len(patch_faces),)
        # Random conv nets also react to the bright square, so not ~0; but clearly below 1.
        assert np.nanmean(rho) < 0.8, method


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
    assert set(maps.max(axis=(1, 2))) <= {0.0, 1.0}


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
    assert list(shares.columns) == [*masks, "other"]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    mouth_only = np.zeros((1, 48, 48), np.float32)
    mouth_only[0, 36, 24] = 1
    assert ex.region_shares(mouth_only).loc[0, "mouth"] == 1
