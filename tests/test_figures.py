"""Figures fit for a report: every committed figure readable at one column's width, and the
drawing functions holding to what their figures claim (shared colour scales, symmetric
diverging scales, intervals around their estimates, labelled axes), on small synthetic inputs."""

from __future__ import annotations

import keras
import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from PIL import Image

from fer_utils import feature_maps as fm
from fer_utils import visualize as viz
from fer_utils.config import EMOTIONS
from fer_utils.evaluation import accuracy_ci, bootstrap_ci, bootstrap_gain_ci

from conftest import ROOT

matplotlib.use("Agg")

MAX_SIDE = 2400  # px: 12 in at 200 dpi, more than a page
MAX_ASPECT = 3.2  # long side ÷ short side
# Committed figures allowed to be wider strips than MAX_ASPECT, each with why the strip is the
# point (a reader compares along it). Empty: every figure now fits.
STRIPS: dict[str, str] = {}
COMMITTED = sorted((ROOT / "figures").glob("*.png"))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    matplotlib.pyplot.close("all")


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.stem)
def test_committed_figure_fits_a_report_column(path) -> None:
    """At most MAX_SIDE px a side and no strip wider than MAX_ASPECT unless allow-listed (the
    notebooks regenerate them: ``./run_all.sh --profile cpu --only NN``)."""
    with Image.open(path) as image:
        width, height = image.size
    assert max(width, height) <= MAX_SIDE, f"{path.name} is {width}×{height} px"
    if path.stem not in STRIPS:
        aspect = max(width, height) / min(width, height)
        assert aspect <= MAX_ASPECT, f"{path.name} is a {aspect:.1f}:1 strip ({width}×{height})"


def test_the_strip_allow_list_names_committed_figures_with_a_reason() -> None:
    names = {p.stem for p in COMMITTED}
    assert all(name in names and reason.strip() for name, reason in STRIPS.items())


def _map_images(fig, row_axes) -> list:
    """The map drawn on each axis (the last image: a face may lie under it)."""
    return [ax.get_images()[-1] for ax in row_axes]


def _grid_axes(fig, nrows: int, ncols: int) -> np.ndarray:
    """The image axes of a map_grid (the colour-bar column left out), as rows."""
    images = [ax for ax in fig.axes if ax.get_images() and ax.get_images()[0].get_array().ndim]
    images = [ax for ax in images if ax.get_images()[0].get_array().shape == (48, 48)]
    return np.array(images).reshape(nrows, ncols)


def _saved_size(name: str) -> tuple[int, int]:
    from fer_utils.config import figures_dir

    with Image.open(figures_dir() / f"{name}.png") as image:
        return image.size


def _fits(name: str) -> None:
    width, height = _saved_size(name)
    assert max(width, height) <= MAX_SIDE and max(width, height) / min(width, height) <= MAX_ASPECT


@pytest.fixture
def rows() -> list[np.ndarray]:
    """Faces and two stacks of maps of very different size, with a masked border."""
    rng = np.random.default_rng(0)
    faces = rng.uniform(0, 255, (7, 48, 48))
    small, large = rng.random((7, 48, 48)), 50 * rng.random((7, 48, 48))
    small[:, :2] = np.nan
    return [faces, small, large]


def test_map_grid_shares_one_colour_scale_per_row_with_a_colour_bar(rows) -> None:
    fig = viz.map_grid(rows, ["face", "small", "large"], list(EMOTIONS), under=rows[0],
                       cbar_label="relevance", save="map_grid")  # fmt: skip
    axes = _grid_axes(fig, 3, 7)
    limits = []
    for r in (1, 2):
        images = _map_images(fig, axes[r])
        norms = {(im.norm.vmin, im.norm.vmax) for im in images}
        assert len(norms) == 1, f"row {r} has {len(norms)} colour scales"
        assert any(im.colorbar is not None for im in images), f"row {r} has no colour bar"
        limits.append(norms.pop())
    assert limits[0] != limits[1]  # rows keep scales of their own
    assert limits[1][1] == pytest.approx(np.nanmax(rows[2]))
    assert images[0].cmap.name == viz.SEQUENTIAL
    _fits("map_grid")


def test_map_grid_figure_scale_is_one_for_all_rows(rows) -> None:
    fig = viz.map_grid(rows, ["face", "small", "large"], scale="figure")
    axes = _grid_axes(fig, 3, 7)
    norms = {(im.norm.vmin, im.norm.vmax) for r in (1, 2) for im in _map_images(fig, axes[r])}
    assert len(norms) == 1
    with pytest.raises(ValueError, match="scale"):
        viz.map_grid(rows, ["face", "small", "large"], scale="each")


def test_signed_maps_get_a_diverging_scale_symmetric_about_zero(rows) -> None:
    signed = np.random.default_rng(1).normal(size=(7, 48, 48)) + 0.5  # not symmetric itself
    top = (np.abs(signed) > 2).astype(int)
    fig = viz.map_grid([rows[0], signed], ["face", "LIME"], signed=True, outlines=[None, top])
    images = _map_images(fig, _grid_axes(fig, 2, 7)[1])
    assert all(im.norm.vmin == -im.norm.vmax == -np.abs(signed).max() for im in images)
    assert images[0].cmap.name == viz.DIVERGING
    assert any(ax.collections for ax in fig.axes), "top superpixels are outlined"


def test_filter_figure_uses_one_symmetric_scale_and_a_colour_bar() -> None:
    kernels = np.random.default_rng(2).normal(0.1, 1, (32, 5, 5))
    fig = viz.face_grid(kernels, [str(k) for k in range(32)], signed=True, cbar_label="weight",
                        save="filters")  # fmt: skip
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 32
    assert {(im.norm.vmin, im.norm.vmax) for im in images} == {
        (-np.abs(kernels).max(), np.abs(kernels).max())
    }
    assert any(im.colorbar is not None for im in images)
    _fits("filters")


def test_map_pairs_put_every_map_on_one_scale_and_title_each_pair() -> None:
    rng = np.random.default_rng(3)
    maps = rng.random((16, 48, 48)) * np.arange(1, 17)[:, None, None]
    titles = [f"sad → happy (0.{k:02d})" for k in range(16)]
    fig = viz.map_pairs(rng.uniform(0, 255, (16, 48, 48)), maps, titles, save="pairs")
    shown = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    mapped = [im for im in shown if im.cmap.name == viz.SEQUENTIAL]
    assert len(mapped) == 16
    assert {(im.norm.vmin, im.norm.vmax) for im in mapped} == {(0.0, maps.max())}
    assert any(im.colorbar is not None for im in mapped)
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert set(titles) <= texts
    _fits("pairs")


def _points_and_bars(ax) -> list[tuple[float, float, float, float]]:
    """(x, y, bar low, bar high) of every marker of an interval panel."""
    markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    points = np.concatenate([c.get_offsets() for c in markers if len(c.get_offsets())])
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = [s for c in bars for s in c.get_segments()]
    bars = {float(s[0, 1]): (float(s[:, 0].min()), float(s[:, 0].max())) for s in segments}
    return [(float(x), float(y), *bars[float(y)]) for x, y in points]


def test_correction_comparison_plots_paired_differences_inside_their_intervals() -> None:
    """As notebook 04 draws it: each model's accuracy minus the uncorrected one's on the same
    faces, in percentage points, with the paired bootstrap interval around it."""
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 7, 400)
    none = np.where(rng.random(400) < 0.55, labels, rng.integers(0, 7, 400))
    rows = []
    for name, flip in (("clahe", 0.05), ("histeq", -0.05), ("gamma", 0.0)):
        guess = np.where(rng.random(400) < 0.55 + flip, labels, rng.integers(0, 7, 400))
        low, high = bootstrap_gain_ci(labels, guess, none)
        gain = (guess == labels).mean() - (none == labels).mean()
        rows.append({"model": name, "gain": 100 * gain, "low": 100 * low, "high": 100 * high})
    table = pd.DataFrame(rows)
    fig = viz.interval_panels(table, "gain", "model", reference=0, xlabel="pp", save="gains")
    ax = fig.axes[0]
    drawn = _points_and_bars(ax)
    assert sorted(x for x, *_ in drawn) == pytest.approx(sorted(table.gain))
    assert all(low <= x <= high for x, _, low, high in drawn)
    assert any(line.get_xdata()[0] == 0 for line in ax.get_lines()), "the 0 line"
    _fits("gains")


def test_accuracy_interval_from_a_share_matches_resampling_the_faces() -> None:
    """An accuracy known only as a share of n faces gets the interval the faces would give."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, 900)
    guess = np.where(rng.random(900) < 0.6, labels, (labels + 1) % 7)
    low, high = accuracy_ci((guess == labels).mean(), 900)
    assert (low, high) == pytest.approx(bootstrap_ci(labels, guess), abs=0.005)
    assert 0.02 < high - low < 0.08  # about ±1.96·√(0.6·0.4/900) = ±3.2 points


def test_robustness_curves_band_the_reference_with_its_interval_and_say_what_s_does() -> None:
    rows = [
        {"model": model, "shift": shift, "strength": s, "accuracy": base - drop * s}
        for model, base, drop in (("none", 0.6, 0.2), ("histeq", 0.6, 0.0))
        for shift in ("darker", "gamma")
        for s in (0.0, 0.5, 1.0)
    ]
    fig = viz.robustness_curves(pd.DataFrame(rows), n=3589, save="robustness")
    darker = fig.axes[0]
    assert "0.8 s" in darker.get_title() and darker.get_xlabel().startswith("strength s")
    (band,) = darker.collections[:1]
    low, high = (100 * b for b in accuracy_ci(0.6, 3589))
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(low - 20, abs=0.2) and ys.max() == pytest.approx(high, abs=0.2)
    _fits("robustness")


def test_faithfulness_marks_losing_to_random_apart_from_noise_in_one_method_order() -> None:
    rows = []
    for perturbation, methods in (("black", ("good", "bad", "same")),
                                  ("blur", ("same", "good", "bad"))):  # fmt: skip
        for method in methods:
            # deletion: lower is better; good beats random, bad loses to it, same is noise
            d = {"good": (-0.05, -0.08, -0.02), "bad": (0.04, 0.01, 0.07),
                 "same": (0.0, -0.02, 0.02)}[method]  # fmt: skip
            rows.append({"method": method, "perturbation": perturbation,
                         "deletion_vs_random": d[0], "deletion_vs_random_low": d[1],
                         "deletion_vs_random_high": d[2], "deletion_beats_random": d[2] < 0,
                         "deletion_loses_random": d[1] > 0,
                         "insertion_vs_random": -d[0], "insertion_vs_random_low": -d[2],
                         "insertion_vs_random_high": -d[1],
                         "insertion_beats_random": -d[2] > 0,
                         "insertion_loses_random": -d[1] < 0})  # fmt: skip
    fig = viz.faithfulness(pd.DataFrame(rows).set_index("method"), save="faithful")
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_yticklabels()] == ["good", "bad", "same"]
        kinds = {}
        for collection in ax.collections:
            if isinstance(collection, PathCollection) and len(collection.get_offsets()):
                kind = collection.get_label()
                kinds[kind] = sorted(collection.get_offsets()[:, 1])
        assert kinds == {"beats random": [0], "loses to random": [1], "within noise": [2]}
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "beats random", "loses to random", "within noise"
    ]  # fmt: skip
    _fits("faithful")


def test_reliability_panels_share_one_count_scale() -> None:
    from fer_utils.calibration import reliability

    rng = np.random.default_rng(6)
    labels = rng.integers(0, 7, 500)
    sharp = np.eye(7)[labels] * 0.9 + 0.1 / 7  # every face in the top bin
    soft = rng.dirichlet(np.ones(7), 500)  # spread over the low bins
    panels = {"before": reliability(sharp, labels), "after": reliability(soft, labels)}
    fig = viz.reliability_diagram(panels, save="reliability")
    counts = [ax for ax in fig.axes if ax.get_ylabel() == "faces (count)" or ax.get_ylim()[1] > 2]
    assert len(counts) == 2 and counts[0].get_ylim() == counts[1].get_ylim()
    assert counts[0].get_ylim()[1] >= 500
    _fits("reliability")


def test_region_ratios_are_drawn_on_a_log_axis_around_one() -> None:
    rows = [
        {"class": c, "region": r, "ratio": v, "low": v / 1.2, "high": v * 1.2}
        for c in EMOTIONS
        for r, v in zip(("eyes", "mouth", "other"), (2.0, 0.5, 0.0), strict=True)
    ]
    fig = viz.interval_panels(pd.DataFrame(rows), "ratio", "class", panels="region",
                              reference=1, log=True, save="ratios")  # fmt: skip
    assert len(fig.axes) == 3 and all(ax.get_xscale() == "log" for ax in fig.axes)
    assert all(any(line.get_xdata()[0] == 1 for line in ax.get_lines()) for ax in fig.axes)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(EMOTIONS)
    _fits("ratios")


def test_filter_preferences_leave_silent_filters_out_and_count_the_rest() -> None:
    rng = np.random.default_rng(5)
    preference = pd.DataFrame(np.exp(rng.normal(0, 0.5, (64, 4))),
                              columns=["brows", "eyes", "nose", "mouth"])  # fmt: skip
    preference.iloc[:3] = np.nan  # silent filters
    fig = viz.filter_preferences(preference, "conv3_relu", save="prefs")
    left, right = fig.axes[:2]
    assert left.get_xscale() == "log"
    assert sum(p.get_width() for p in right.patches) == 61
    assert "3 silent" in fig._suptitle.get_text()
    _fits("prefs")


def test_members_vs_ensemble_keeps_its_legend_off_the_data() -> None:
    rng = np.random.default_rng(6)
    members = pd.DataFrame(rng.uniform(0.3, 0.8, (7, 13)), index=list(EMOTIONS))
    series = pd.DataFrame(
        {"value": members[0], "low": members[0] - 0.05, "high": members[0] + 0.05}
    )
    fig = viz.members_vs_ensemble(members, {"best": series, "ensemble": series}, save="members")
    assert fig.axes[0].get_legend() is None and fig.legends
    assert "%" in fig.axes[0].get_xlabel()
    _fits("members")


def test_label_efficiency_uses_a_log_axis_with_intervals_and_seed_spread() -> None:
    fractions = [0.05, 0.1, 0.25, 1.0]
    curve = pd.DataFrame(  # columns in another order than the starts: the labels must follow
        {"random": [0.49, 0.54, 0.57, 0.66], "simclr": [0.52, 0.56, 0.59, 0.66]}, index=fractions
    )
    for init in ("simclr", "random"):
        curve[f"{init}_low"], curve[f"{init}_high"] = curve[init] - 0.015, curve[init] + 0.015
    curve["gain"] = curve.simclr - curve.random
    curve["gain_low"], curve["gain_high"] = curve.gain - 0.01, curve.gain + 0.01
    spread = pd.DataFrame({"simclr": [0.55, 0.56], "random": [0.53, 0.55], "gain": [0.02, 0.01]})
    fig = viz.label_efficiency(curve, spread, 0.1, seed=13, save="label_efficiency")
    left, right = fig.axes
    assert left.get_xscale() == right.get_xscale() == "log"
    assert [t.get_text() for t in left.get_xticklabels()] == ["5", "10", "25", "100"]
    legend = " ".join(t.get_text() for t in left.get_legend().get_texts())
    assert "simclr (seed 13)" in legend and "random (seed 13)" in legend and "each seed" in legend
    assert right.get_ylabel().startswith("simclr − random")
    first = left.get_legend().get_texts()
    assert next(t.get_text() for t in first if "seed 13" in t.get_text()).startswith("simclr")
    _fits("label_efficiency")


def test_accuracy_vs_members_draws_percent_with_intervals_and_the_legend_off_the_data() -> None:
    rows = [{"split": split, "members": k, "accuracy": 0.69 + 0.002 * k, "low": 0.68,
             "high": 0.72, "gain": 0.002 * (k - 1), "gain_low": -0.004, "gain_high": 0.01}
            for split in ("PublicTest", "PrivateTest") for k in (1, 2, 3)]  # fmt: skip
    fig = viz.accuracy_vs_members(pd.DataFrame(rows), save="by_size")
    left, right = fig.axes
    assert "%" in left.get_ylabel() and "points" in right.get_ylabel()
    assert len(left.containers) == len(right.containers) == 2  # error bars for each split
    tops = [bars.lines[0].get_ydata().max() for bars in left.containers]
    assert tops == pytest.approx([69.6, 69.6])  # percent, not shares
    assert left.get_legend() is None and len(fig.legends) == 1  # below the panels
    _fits("by_size")


def test_lines_label_the_x_axis_and_heatmaps_get_a_colour_bar() -> None:
    table = pd.DataFrame({"loss": [3.0, 2.5, 2.2]}, index=pd.Index([1, 2, 3], name="epoch"))
    assert viz.lines(table, "loss", "NT-Xent loss").axes[0].get_xlabel() == "epoch"
    counts = pd.DataFrame(np.arange(49).reshape(7, 7), index=list(EMOTIONS), columns=list(EMOTIONS))
    fig = viz.heatmap(counts, "confusion")
    mesh = fig.axes[0].collections[0]
    assert mesh.colorbar is not None and (mesh.norm.vmin, mesh.norm.vmax) == (0, 1)


def test_mean_faces_difference_row_is_symmetric_about_zero() -> None:
    rng = np.random.default_rng(7)
    fig = viz.mean_faces(rng.uniform(0, 255, (7, 48, 48)), rng.normal(0.3, 1, (7, 48, 48)))
    images = _map_images(fig, _grid_axes(fig, 2, 7)[1])
    assert all(im.norm.vmin == -im.norm.vmax for im in images)
    assert any(im.colorbar is not None for im in images)


def test_border_mask_covers_the_outer_cells_of_a_block_grid() -> None:
    mask = fm.border_mask(12)  # 4 px per cell
    assert mask.shape == (48, 48)
    assert mask[:4].all() and mask[:, -4:].all() and not mask[4:44, 4:44].any()
    assert fm.border_mask(48).sum() == 48 * 4 - 4


def test_gaussian_blur_modifier_blurs_every_kth_step_only() -> None:
    blur = fm.GaussianBlur(sigma=1.0, every=2)
    image = np.zeros((1, 48, 48, 1), np.float32)
    image[0, 24, 24] = 255
    first, second = blur(image), blur(image)
    assert np.array_equal(np.asarray(first), image)
    assert np.asarray(second).max() < 255 and np.asarray(second).sum() == pytest.approx(255, 1e-3)


def test_silent_filters_have_no_region_preference_and_liveliest_are_alive() -> None:
    """A filter whose ReLU never fires has NaN ratios, not a spurious preference for the first
    region, and is never among the liveliest filters."""
    faces = keras.Input((48, 48, 1))
    conv = keras.layers.Conv2D(3, 3, padding="same", name="conv")(faces)
    model = keras.Model(faces, keras.layers.ReLU(name="conv_relu")(conv))
    kernel = np.zeros((3, 3, 1, 3), np.float32)
    kernel[1, 1, 0] = (1.0, 0.5, 0.0)
    model.get_layer("conv").set_weights([kernel, np.array([0.0, 0.0, -1.0], np.float32)])
    images = np.random.default_rng(8).uniform(0, 255, (4, 48, 48))
    regions = {"top": np.zeros((48, 48), bool), "bottom": np.zeros((48, 48), bool)}
    regions["top"][:24], regions["bottom"][24:] = True, True
    table = fm.filter_regions(model, images, "conv_relu", regions)
    assert table.loc[2].isna().all() and table.loc[:1].notna().all().all()
    activation = fm.filter_activations(model, "conv_relu", images)
    assert list(fm.liveliest_filters(activation, 2)) == [0, 1]
