"""Illumination corrections and lighting shifts on real sample faces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer_utils.data import load_fer2013
from fer_utils.errors import UsageError
from fer_utils.evaluation import lighting_robustness, saved_robustness
from fer_utils.preprocessing import CORRECTIONS, SHIFTS, correct, shift_lighting

from conftest import SAMPLE_CSV

METHODS = [m for m in CORRECTIONS if m != "none"]


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return load_fer2013(SAMPLE_CSV).images[:40]


@pytest.mark.parametrize("method", CORRECTIONS)
def test_correction_keeps_shape_dtype_range_and_is_deterministic(faces, method) -> None:
    for batch in (faces, faces[..., None].astype(np.float32)):
        out = correct(batch, method)
        assert out.shape == batch.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
        assert np.array_equal(out, correct(batch, method))


@pytest.mark.parametrize("method", CORRECTIONS)
def test_constant_face_stays_flat(method) -> None:
    out = correct(np.full((3, 48, 48), 90, np.uint8), method)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    assert np.ptp(out, axis=(1, 2)).max() == 0  # no structure invented in a flat image


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("change", ["darker", "gamma"])
def test_correction_undoes_a_global_lighting_change(faces, method, change) -> None:
    x = faces.astype(np.float32)
    changed = x * 0.5 if change == "darker" else 255 * (x / 255) ** 1.8
    before = np.abs(x - changed).mean()
    after = np.abs(correct(x, method) - correct(changed, method)).mean()
    assert after < 0.7 * before, f"{method}: {after:.1f} vs {before:.1f} grey levels"


def test_unknown_names_are_refused(faces) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        correct(faces, "sepia")
    with pytest.raises(ValueError, match="choose one of"):
        shift_lighting(faces, "moonlight", 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        shift_lighting(faces, "darker", 2.0)


@pytest.mark.parametrize("kind", SHIFTS)
def test_zero_strength_changes_nothing(faces, kind) -> None:
    assert np.allclose(shift_lighting(faces, kind, 0.0), faces, atol=1e-3)


def test_lighting_shifts_move_intensity_the_stated_way(faces) -> None:
    x = faces.astype(np.float32)
    for strength in (0.3, 0.7):
        assert shift_lighting(x, "darker", strength).mean() < x.mean() - 20
        assert shift_lighting(x, "brighter", strength).mean() > x.mean() + 20
        assert shift_lighting(x, "gamma", strength).mean() < x.mean() - 10
        low = shift_lighting(x, "low_contrast", strength)
        assert low.std(axis=(1, 2)).mean() < 0.8 * x.std(axis=(1, 2)).mean()
        assert abs(low.mean() - x.mean()) < 1
        side = shift_lighting(x, "side_light", strength)
        column_ratio = side.mean(axis=(0, 1)) / x.mean(axis=(0, 1))
        assert column_ratio[:8].mean() > 0.95 and column_ratio[-8:].mean() < 1 - 0.7 * strength
    stronger = [shift_lighting(x, "darker", s).mean() for s in (0.2, 0.5, 0.8)]
    assert stronger == sorted(stronger, reverse=True)


def test_a_saved_robustness_table_is_used_only_for_the_models_it_was_measured_on(
    tmp_path,
) -> None:
    class Constant:
        """A model that answers one emotion for every face."""

        def __init__(self, emotion: int) -> None:
            self.emotion = emotion

        def predict(self, faces, **_) -> np.ndarray:
            return np.tile(np.eye(7)[self.emotion], (len(faces), 1))

    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48, 1)).astype(np.float32)
    labels = np.array([3] * 7 + [0] * 3)
    models = {"happy": Constant(3), "angry": Constant(0)}
    measured = lighting_robustness(models, faces, labels, strengths=(0.5,))
    path = tmp_path / "robustness.csv"
    measured.to_csv(path, index=False)
    read = saved_robustness(path, {"happy": 0.7, "angry": 0.3}, (0.5,))
    pd.testing.assert_frame_equal(read.reset_index(drop=True), measured)
    with pytest.raises(UsageError, match="other models than angry"):
        saved_robustness(path, {"happy": 0.7, "angry": 0.31}, (0.5,))  # retrained since
    with pytest.raises(UsageError, match="other models than sad"):
        saved_robustness(path, {"happy": 0.7, "sad": 0.3}, (0.5,))
    with pytest.raises(UsageError, match=r"strengths \[0.5\], not \[0.25, 0.5\]"):
        saved_robustness(path, {"happy": 0.7, "angry": 0.3}, (0.25, 0.5))
    with pytest.raises(UsageError, match="not found"):
        saved_robustness(tmp_path / "none.csv", {"happy": 0.7}, (0.5,))
