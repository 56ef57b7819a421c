"""Figures. Each function draws what it is given and, with ``save=NAME``, writes
``figures/NAME.png`` at print quality; nothing here computes new results.

One standard for all of them: at most :data:`MAX_WIDTH` inches wide (one report column), axes
labelled with units, intervals where numbers are compared, perceptually uniform colour maps
(:data:`SEQUENTIAL`; :data:`DIVERGING` only for signed quantities, symmetric about 0) with a
colour bar and one scale per row or figure, and the direction of "better" said where it is not
obvious."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator

from fer_utils.config import EMOTIONS, figures_dir
from fer_utils.files import atomic_path
from fer_utils.provenance import png_metadata

DPI = 200
MAX_WIDTH = 7.5  # inches: the widest a figure is drawn (one report column, read at 100 %)
SEQUENTIAL = "magma"  # perceptually uniform, for non-negative maps
DIVERGING = "RdBu_r"  # for signed quantities only, always symmetric about 0 (red > 0)
BAD = "0.85"  # how a NaN (masked) pixel of a map is drawn


def _bare(ax: plt.Axes) -> None:
    """An image axis without ticks or frame, which keeps its x / y labels."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _colormap(name: str) -> mcolors.Colormap:
    """``name`` with NaN drawn as :data:`BAD` grey."""
    return plt.get_cmap(name).with_extremes(bad=BAD)


def _norm(values: np.ndarray, signed: bool = False) -> mcolors.Normalize:
    """One colour scale for ``values`` (NaN ignored): symmetric about 0 when ``signed``, else
    from min(0, smallest) to the largest."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if signed:
        limit = float(np.abs(finite).max()) if finite.size else 1.0
        return mcolors.Normalize(-(limit or 1.0), limit or 1.0)
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 1.0
    return mcolors.Normalize(low, high if high > low else low + 1.0)


def _row_label(ax: plt.Axes, text: str, width: int = 12) -> None:
    """A row's name left of its first image, wrapped to ``width`` characters."""
    wrapped = textwrap.fill(text.replace("_", " "), width)
    ax.set_ylabel(wrapped, fontsize=7, rotation=0, ha="right", va="center", labelpad=4)


def save_figure(fig: plt.Figure, name: str | None) -> Path | None:
    """Write ``fig`` to ``figures/<name>.png`` (200 dpi, tight), with what it was made from
    (:func:`fer_utils.provenance.made_from`) in its metadata, and return the path."""
    if name is None:
        return None
    path = figures_dir() / f"{name}.png"
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=DPI, bbox_inches="tight", metadata=png_metadata())
    return path


def class_balance(counts: pd.DataFrame, save: str | None = None) -> plt.Figure:
    """Grouped bars of images per emotion, one colour per split (``Dataset.counts()``)."""
    shares = counts.drop(columns="total", errors="ignore")
    long = shares.reset_index().melt(id_vars="split", var_name="emotion", value_name="images")
    fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    sns.barplot(long, x="emotion", y="images", hue="split", ax=ax)
    ax.set(title="Images per emotion and split", xlabel="", ylabel="images (count)")
    save_figure(fig, save)
    return fig


def face_grid(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    suptitle: str | None = None,
    cbar_label: str | None = None,
    signed: bool = False,
    save: str | None = None,
) -> plt.Figure:
    """Faces in a grid, with titles: grey on one 0–255 scale when every value is in that
    range, else on one scale spanning all of them; ``signed`` images (e.g. filter weights) on
    one diverging scale symmetric about 0. ``cbar_label``: add a colour bar."""
    n = len(images)
    ncols = min(ncols, max(n, 1))
    nrows = max(1, -(-n // ncols))
    cell = min(1.3, (MAX_WIDTH - (0.6 if cbar_label else 0)) / ncols)
    title_space = 0.3 if titles is not None else 0.05
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(cell * ncols + (0.6 if cbar_label else 0),
                               (cell + title_space) * nrows + (0.3 if suptitle else 0)),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    finite = np.asarray(images, dtype=np.float64)
    in_range = np.nanmin(finite) >= 0 and np.nanmax(finite) <= 255
    if signed:
        norm, cmap = _norm(finite, signed=True), _colormap(DIVERGING)
    else:
        norm, cmap = mcolors.Normalize(0, 255) if in_range else _norm(finite), _colormap("gray")
    shown = None
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            shown = ax.imshow(images[k], cmap=cmap, norm=norm)
            if titles is not None:
                ax.set_title(titles[k], fontsize=7)
    if cbar_label and shown is not None:
        fig.colorbar(shown, ax=axes, label=cbar_label, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    save_figure(fig, save)
    return fig


def samples_per_class(
    images: np.ndarray, labels: np.ndarray, per_class: int = 8, seed: int = 0,
    save: str | None = None,
) -> plt.Figure:  # fmt: skip
    """A row of random faces for every emotion."""
    rng = np.random.default_rng(seed)
    rows, titles = [], []
    for label, name in enumerate(EMOTIONS):
        members = np.flatnonzero(labels == label)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False)
        chosen = np.pad(chosen, (0, per_class - len(chosen)), constant_values=-1)
        rows.extend(images[i] if i >= 0 else np.full(images.shape[1:], np.nan) for i in chosen)
        titles.extend([name] + [""] * (per_class - 1))
    return face_grid(np.stack(rows), titles, ncols=per_class, save=save)


def mean_faces(
    faces: np.ndarray, standardised: np.ndarray | None = None, save: str | None = None
) -> plt.Figure:
    """Top: the mean face of each emotion (7, 48, 48) in grey levels. Bottom: each emotion's
    mean minus the mean of the seven, from ``standardised`` means (of faces each standardised
    on its own: minus its mean, divided by its standard deviation, so that brightness and
    contrast do not dominate; in units of a face's standard deviation) when given, else from
    ``faces`` (grey levels), on a diverging scale symmetric about 0 with its colour bar."""
    source = faces if standardised is None else standardised
    differences = source - np.nanmean(source, axis=0)
    unit = "grey levels" if standardised is None else "s.d. of a face"
    return map_grid(
        [faces, differences], ("mean face", "minus mean of all"), list(EMOTIONS), signed=True,
        cbar_label=f"difference ({unit})", save=save,
        suptitle="Mean face per emotion" + ("" if standardised is None else
                                            "; below: faces standardised one by one"),
    )  # fmt: skip


def distributions(
    stats: pd.DataFrame,
    columns: Sequence[str],
    by: str = "emotion",
    unit: str = "grey levels, 0–255",
    save: str | None = None,
) -> plt.Figure:
    """One box plot per column of ``stats`` (three to a row), grouped by ``by``, each y axis
    labelled with the columns' ``unit``."""
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(MAX_WIDTH, 2.9 * nrows), squeeze=False, layout="constrained"
    )
    for ax, column in zip(axes.flat, columns, strict=False):
        sns.boxplot(stats, x=by, y=column, ax=ax, fliersize=1, linewidth=0.8)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        ax.set(title=column.replace("_", " "), xlabel="", ylabel=unit)
    for ax in axes.flat[len(columns) :]:
        ax.axis("off")
    save_figure(fig, save)
    return fig


def heatmap(
    table: pd.DataFrame,
    title: str,
    normalize_rows: bool = True,
    fmt: str = ".2f",
    cbar_label: str | None = None,
    limits: tuple[float, float] | None = None,
    save: str | None = None,
) -> plt.Figure:
    """A labelled heatmap of a table (row-normalised to shares by default), e.g. a confusion
    matrix or an agreement table, with its colour bar (``cbar_label``; shares are drawn on
    0–1 unless ``limits`` says otherwise). Cells are annotated while they stay legible."""
    values = table.div(table.sum(axis=1).replace(0, np.nan), axis=0) if normalize_rows else table
    rows, cols = table.shape
    cell = min(0.6, (MAX_WIDTH - 2.6) / cols)
    limits = limits or ((0.0, 1.0) if normalize_rows else (None, None))
    fig, ax = plt.subplots(figsize=(cell * cols + 2.6, cell * rows + 1.4), layout="constrained")
    sns.heatmap(
        values, annot=cell >= 0.3, fmt=fmt, cmap="viridis", vmin=limits[0], vmax=limits[1],
        annot_kws={"fontsize": 8 if cell >= 0.5 else 6}, ax=ax,
        cbar_kws={"label": textwrap.fill(
            cbar_label or ("share of the row" if normalize_rows else "value"), 28)},
    )  # fmt: skip
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="both", labelsize=8 if cell >= 0.5 else 6)
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)  # row names read across, like the columns'
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    save_figure(fig, save)
    return fig


def cleaning_examples(
    images: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    examples: dict[str, list[np.ndarray]],
    save: str | None = None,
) -> plt.Figure:
    """One row per cleaning finding with its example rows (``cleaning.examples``), each face
    titled with its label and split; groups are separated by a blank cell."""
    cells: list[list[int | None]] = []
    for groups in examples.values():
        row: list[int | None] = []
        for group in groups:
            row.extend([*group.tolist(), None])
        cells.append(row[:-1] if row else [])
    ncols = max(1, *(len(r) for r in cells))
    cell = min(1.25, (MAX_WIDTH - 1.3) / ncols)
    fig, axes = plt.subplots(
        len(cells), ncols, figsize=(cell * ncols + 1.3, (cell + 0.35) * len(cells)), squeeze=False
    )
    for r, (name, row) in enumerate(zip(examples, cells, strict=True)):
        axes[r, 0].text(-0.15, 0.5, textwrap.fill(name.replace("_", " "), 14), ha="right",
                        va="center", fontsize=8, transform=axes[r, 0].transAxes)  # fmt: skip
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c < len(row) and row[c] is not None:
                i = row[c]
                ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{EMOTIONS[labels[i]]}\n{splits[i]}", fontsize=6.5)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def learning_curves(histories: dict[str, pd.DataFrame], save: str | None = None) -> plt.Figure:
    """Training and PublicTest accuracy and loss per epoch, one colour per run."""
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4), layout="constrained")
    for (name, history), colour in zip(histories.items(), sns.color_palette(), strict=False):
        if history.empty:
            continue
        epochs = history["epoch"] + 1
        for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
            ax.plot(epochs, history[metric], "--", color=colour, label=f"{name} train")
            ax.plot(epochs, history[f"val_{metric}"], color=colour, label=f"{name} PublicTest")
    labels = ("accuracy (share right; higher is better)", "loss (cross-entropy; lower is better)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize=7)
    save_figure(fig, save)
    return fig


def mistakes(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, indices: np.ndarray,
    ncols: int = 8, save: str | None = None,
) -> plt.Figure:  # fmt: skip
    """Faces at ``indices`` titled 'true → predicted (confidence)', which the figure's title
    says."""
    predicted = probabilities.argmax(axis=1)
    titles = [
        f"{EMOTIONS[labels[i]]} → {EMOTIONS[predicted[i]]}\n({probabilities[i, predicted[i]]:.2f})"
        for i in indices
    ]
    key = "each face: true label → prediction (its confidence)"
    return face_grid(images[indices], titles, ncols=ncols, suptitle=key, save=save)


def grouped_bars(
    table: pd.DataFrame, title: str, ylabel: str, save: str | None = None
) -> plt.Figure:
    """One group of bars per row of ``table`` (e.g. emotions), one bar per column (e.g. models)."""
    long = table.rename_axis("row").reset_index().melt(id_vars="row", var_name="series")
    fig, ax = plt.subplots(figsize=(MAX_WIDTH, 3.6), layout="constrained")
    sns.barplot(long, x="row", y="value", hue="series", ax=ax)
    ax.set(title=title, xlabel="", ylabel=ylabel)
    sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.08), title=None, frameon=False,
                    ncols=min(4, table.shape[1]), fontsize=7)  # fmt: skip
    save_figure(fig, save)
    return fig


def lines(
    table: pd.DataFrame,
    title: str,
    ylabel: str,
    xlabel: str | None = None,
    save: str | None = None,
) -> plt.Figure:
    """One line with markers per column of ``table`` against its index; the x axis is labelled
    ``xlabel``, else the index's name. A single column needs no legend."""
    fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
    table.plot(ax=ax, marker="o", legend=table.shape[1] > 1)
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel or table.index.name or "")
    if pd.api.types.is_integer_dtype(table.index):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    save_figure(fig, save)
    return fig


def accuracy_vs_members(table: pd.DataFrame, save: str | None = None) -> plt.Figure:
    """The uniform vote of the first k members (``ensemble.accuracy_by_size``): left, each
    split's accuracy (%) with its 95 % bootstrap interval; right, the paired gain over the
    first member alone (percentage points) with its interval, a dashed line at no gain."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.2), sharex=True, layout="constrained")
    splits = list(dict.fromkeys(table.split))
    for k, split in enumerate(splits):
        part = table[table.split == split]
        x = part.members.to_numpy() + 0.12 * (k - (len(splits) - 1) / 2)  # side by side
        for ax, columns in ((left, ("accuracy", "low", "high")),
                            (right, ("gain", "gain_low", "gain_high"))):  # fmt: skip
            y, low, high = (100 * part[c].to_numpy(float) for c in columns)
            ax.errorbar(x, y, yerr=[y - low, high - y], fmt="-o", color=f"C{k}", markersize=3.5,
                        capsize=2, lw=1, label=split if ax is left else None)  # fmt: skip
    right.axhline(0, color="0.3", lw=0.8, ls="--")
    left.set_ylabel("accuracy (%, higher is better)")
    right.set_ylabel("gain over the first member\nalone (percentage points)")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("members in the vote (k)")
        ax.grid(alpha=0.3)
    fig.suptitle("Uniform vote of the first k members picked by greedy selection on PublicTest",
                 fontsize=9)  # fmt: skip
    fig.legend(loc="outside lower center", ncols=len(splits), fontsize=8,
               title="95 % bootstrap intervals (gain: paired)", title_fontsize=8)  # fmt: skip
    save_figure(fig, save)
    return fig


def map_grid(
    rows: Sequence[np.ndarray],
    row_titles: Sequence[str],
    column_titles: Sequence[str] | None = None,
    under: np.ndarray | None = None,
    scale: str = "row",
    signed: bool = False,
    cbar_label: str = "",
    outlines: Sequence[np.ndarray | None] | None = None,
    suptitle: str | None = None,
    save: str | None = None,
) -> plt.Figure:
    """A grid with one row per stack of images (N, 48, 48): the first row as grey faces, the
    others as maps, drawn over the faces ``under`` when given (half transparent). ``scale``
    "row": the maps of a row share one colour scale, with a colour bar at the row's end;
    "figure": all maps share one, with one colour bar. ``signed``: a diverging map symmetric
    about 0 (for signed maps), else :data:`SEQUENTIAL` from min(0, smallest) to the largest.
    NaN pixels (a masked border) are light grey. ``outlines``: per row, a stack whose non-zero
    pixels are outlined (e.g. LIME's top superpixels), or None."""
    if scale not in ("row", "figure"):
        raise ValueError(f"scale is 'row' or 'figure', not {scale!r}")
    n, nrows = len(rows[0]), len(rows)
    cell = min(1.0, (MAX_WIDTH - 1.7) / n)
    height = cell * nrows + (0.25 if column_titles is not None else 0) + (0.3 if suptitle else 0)
    fig, axes = plt.subplots(
        nrows, n + 1, figsize=(cell * n + 1.7, height + 0.25), squeeze=False,
        width_ratios=[1] * n + [0.08], layout="constrained",
    )  # fmt: skip
    bars = axes[:, -1]  # the colour bars' column, so that every row's images line up
    for ax in bars:
        ax.axis("off")
    if scale == "figure" and nrows > 1:
        for ax in bars[1:]:
            ax.remove()
        bars[1] = fig.add_subplot(axes[0, 0].get_gridspec()[1:, -1])
    cmap = _colormap(DIVERGING if signed else SEQUENTIAL)
    maps = [np.asarray(stack, dtype=np.float64).ravel() for stack in rows[1:]]
    shared = _norm(np.concatenate(maps), signed) if scale == "figure" and maps else None
    for r, (stack, title) in enumerate(zip(rows, row_titles, strict=True)):
        norm = shared or _norm(stack, signed)
        outline = outlines[r] if outlines is not None else None
        for c, ax in enumerate(axes[r, :-1]):
            _bare(ax)
            if r == 0:
                ax.imshow(stack[c], cmap="gray", vmin=0, vmax=255)
                if column_titles is not None:
                    ax.set_title(column_titles[c], fontsize=7)
                continue
            if under is not None:
                ax.imshow(under[c], cmap="gray", vmin=0, vmax=255)
            shown = ax.imshow(stack[c], cmap=cmap, norm=norm, alpha=0.6 if under is not None else 1)
            if outline is not None and np.any(outline[c]):
                ax.contour(outline[c] != 0, levels=[0.5], colors="k", linewidths=0.6)
        _row_label(axes[r, 0], title)
        if r and (scale == "row" or r == 1):
            bars[r].axis("on")
            bar = fig.colorbar(shown, cax=bars[r])
            bar.ax.tick_params(labelsize=6)
            bar.set_label(textwrap.fill(cbar_label, 16 if scale == "row" else 40), fontsize=6)
    note = "colour scale shared within each row" if scale == "row" else "one colour scale"
    fig.supxlabel(note + ("; grey: masked" if any(np.isnan(m).any() for m in maps) else ""),
                  fontsize=7, color="0.35")  # fmt: skip
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    save_figure(fig, save)
    return fig


def map_pairs(
    faces: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str],
    ncols: int = 4,
    cbar_label: str = "",
    suptitle: str | None = None,
    save: str | None = None,
) -> plt.Figure:
    """Each face beside its map, ``ncols`` pairs to a row, each pair titled (e.g. 'true →
    predicted (confidence)'); every map on one :data:`SEQUENTIAL` colour scale, one colour bar."""
    n = len(faces)
    nrows = -(-n // ncols)
    cell = min(0.9, (MAX_WIDTH - 0.9) / (2.25 * ncols))
    fig = plt.figure(figsize=(2.25 * ncols * cell + 0.9, (cell + 0.32) * nrows + 0.4))
    grid = fig.add_gridspec(
        nrows, 3 * ncols - 1, width_ratios=([1, 1, 0.25] * ncols)[:-1],
        left=0.02, right=0.88, bottom=0.02, top=0.9 if suptitle else 0.95, wspace=0.04, hspace=0.4,
    )  # fmt: skip
    norm, cmap = _norm(maps), _colormap(SEQUENTIAL)
    shown = None
    for k in range(n):
        row, col = divmod(k, ncols)
        face_ax, map_ax = (
            fig.add_subplot(grid[row, 3 * col]),
            fig.add_subplot(grid[row, 3 * col + 1]),
        )
        face_ax.imshow(faces[k], cmap="gray", vmin=0, vmax=255)
        shown = map_ax.imshow(maps[k], cmap=cmap, norm=norm)
        face_ax.text(1.02, 1.06, titles[k], transform=face_ax.transAxes, ha="center",
                     va="bottom", fontsize=7)  # fmt: skip
        for ax in (face_ax, map_ax):
            _bare(ax)
    if shown is not None:
        bar = fig.colorbar(shown, cax=fig.add_axes((0.9, 0.1, 0.015, 0.75)))
        bar.set_label(cbar_label, fontsize=7)
        bar.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    save_figure(fig, save)
    return fig


def region_overlay(
    face: np.ndarray, regions: dict[str, np.ndarray], save: str | None = None
) -> plt.Figure:
    """A face with each facial region's mask outlined in its own colour."""
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.imshow(face, cmap="gray", vmin=0, vmax=255)
    for colour, (name, mask) in zip(sns.color_palette("tab10"), regions.items(), strict=False):
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.5)
        y, x = np.argwhere(mask).mean(axis=0)
        ax.text(x, y, name, color=colour, fontsize=7, ha="center", va="center")
    ax.axis("off")
    save_figure(fig, save)
    return fig


def variants_grid(
    variants: dict[str, np.ndarray],
    column_titles: Sequence[str] | None = None,
    save: str | None = None,
) -> plt.Figure:
    """One row of grey faces (N, 48, 48) in 0–255 per variant (e.g. per illumination
    correction or lighting shift) of the same N faces."""
    rows, n = len(variants), len(next(iter(variants.values())))
    cell = min(1.0, (MAX_WIDTH - 1.2) / n)
    fig, axes = plt.subplots(
        rows, n, figsize=(cell * n + 1.2, cell * rows + 0.3), squeeze=False, layout="constrained"
    )
    for r, (name, faces) in enumerate(variants.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.squeeze(faces[c]), cmap="gray", vmin=0, vmax=255)
            _bare(ax)
            if r == 0 and column_titles is not None:
                ax.set_title(column_titles[c], fontsize=7)
        _row_label(axes[r, 0], name)
    save_figure(fig, save)
    return fig


def robustness_curves(
    table: pd.DataFrame, n: int | None = None, reference: str = "none", save: str | None = None
) -> plt.Figure:
    """Accuracy (%) against shift strength, one panel per lighting shift (three to a row,
    titled with what its strength does) and one line per model (the long table of
    :func:`fer_utils.evaluation.lighting_robustness`); with ``n`` (faces per accuracy) a grey
    band is the ``reference`` model's 95 % interval, so a line outside it differs beyond noise
    of that one accuracy. The legend takes a spare panel, or sits below."""
    from fer_utils.evaluation import accuracy_ci
    from fer_utils.preprocessing import SHIFTS

    shifts = list(dict.fromkeys(table["shift"]))
    ncols = min(3, len(shifts))
    nrows = -(-len(shifts) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(MAX_WIDTH, 2.5 * nrows + 0.4), sharey=True,
                             squeeze=False, layout="constrained")  # fmt: skip
    percent = table.assign(accuracy=100 * table.accuracy)
    models = list(dict.fromkeys(table["model"]))
    palette = dict(zip(models, sns.color_palette("tab10" if len(models) <= 10 else "husl",
                                                 len(models)), strict=True))  # fmt: skip
    band = n is not None and reference in models
    for ax, shift in zip(axes.flat, shifts, strict=False):
        part = percent[percent["shift"] == shift]
        if band:
            ref = part[part.model == reference].sort_values("strength")
            bounds = np.array([accuracy_ci(a / 100, n) for a in ref.accuracy]) * 100
            ax.fill_between(ref.strength, bounds[:, 0], bounds[:, 1], color="0.8", lw=0)
        sns.lineplot(part, x="strength", y="accuracy", hue="model", marker="o", ax=ax,
                     palette=palette, legend=False, markersize=4, linewidth=1)  # fmt: skip
        ax.set(xlabel="strength s (0 = unchanged)")
        ax.set_title(f"{shift.replace('_', ' ')}: {SHIFTS.get(shift, '')}".rstrip(": "),
                     fontsize=7)  # fmt: skip
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%, higher is better)")
    handles = [plt.Line2D([], [], color=palette[m], marker="o", markersize=4) for m in models]
    labels = list(models)
    if band:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.8"))
        labels.append(f"{reference}: 95 % interval")
    spare = list(axes.flat[len(shifts) :])
    for ax in spare:
        ax.axis("off")
    if spare:
        spare[0].legend(handles, labels, loc="center", fontsize=7, title="model")
    else:
        fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=7)
    save_figure(fig, save)
    return fig


def _ratio_axis(ax: plt.Axes, axis: str = "x") -> None:
    """A log-2 axis for ratios, its ticks written as plain numbers (0.5, 1, 2)."""
    getattr(ax, f"set_{axis}scale")("log", base=2)
    getattr(ax, f"{axis}axis").set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def interval_panels(
    table: pd.DataFrame,
    value: str,
    y: str,
    panels: str | None = None,
    rows: str | None = None,
    reference: float = 0.0,
    log: bool = False,
    xlabel: str = "",
    title: str | None = None,
    save: str | None = None,
) -> plt.Figure:
    """Estimates with their 95 % intervals (columns ``value``, ``low``, ``high`` of a tidy
    ``table``), one line per level of ``y``, in a grid of panels: a column per level of
    ``panels`` and a row per level of ``rows`` (either may be None), all on one x scale, with
    a dashed line at ``reference`` (1 = a uniform map, 0 = no difference). ``log``: a log-2
    axis for ratios (values below 1/64 drawn at 1/64). Filled markers: the interval excludes
    the reference; open: it does not."""
    column_levels = list(dict.fromkeys(table[panels])) if panels else [None]
    row_levels = list(dict.fromkeys(table[rows])) if rows else [None]
    y_levels = list(dict.fromkeys(table[y]))
    width = MAX_WIDTH if len(column_levels) > 2 else 3.2 * len(column_levels) + 1.2
    height = (0.17 * len(y_levels) + 0.55) * len(row_levels) + 0.9
    fig, axes = plt.subplots(
        len(row_levels), len(column_levels), figsize=(width, height), sharex=True, sharey=True,
        squeeze=False, layout="constrained",
    )  # fmt: skip
    floor = 1 / 64 if log else -np.inf
    for r, row_level in enumerate(row_levels):
        for c, column_level in enumerate(column_levels):
            ax, part = axes[r, c], table
            if panels:
                part = part[part[panels] == column_level]
            if rows:
                part = part[part[rows] == row_level]
            position = part[y].map({level: k for k, level in enumerate(y_levels)}).to_numpy()
            estimate, low, high = (np.maximum(part[k].to_numpy(float), floor)
                                   for k in (value, "low", "high"))  # fmt: skip
            apart = (low > reference) | (high < reference)
            ax.errorbar(estimate, position, xerr=[estimate - low, high - estimate], fmt="none",
                        ecolor="0.45", elinewidth=1)  # fmt: skip
            ax.scatter(estimate[apart], position[apart], s=14, color="C0", zorder=3)
            ax.scatter(estimate[~apart], position[~apart], s=14, facecolor="white",
                       edgecolor="C0", zorder=3)  # fmt: skip
            ax.axvline(reference, color="0.3", lw=0.8, ls="--")
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(labelsize=7)
            if log:
                _ratio_axis(ax)
            if column_level is not None and r == 0:
                ax.set_title(str(column_level), fontsize=8)
            if row_level is not None and c == 0:
                ax.set_ylabel(str(row_level).replace("_", " "), fontsize=8)
    axes[0, 0].set_yticks(range(len(y_levels)), y_levels)
    axes[0, 0].set_ylim(len(y_levels) - 0.5, -0.5)
    key = f"filled: the 95 % interval excludes {reference:g}; open: it includes it"
    fig.supxlabel(f"{xlabel}\n{key}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, save)
    return fig


def filter_preferences(
    preference: pd.DataFrame, layer: str, floor: float = 1 / 16, save: str | None = None
) -> plt.Figure:
    """Which facial region each filter of ``layer`` prefers (``feature_maps.filter_regions``):
    left, per region, the distribution over the filters of their activation density there
    relative to the face's average (log axis; 1 = no preference; below ``floor`` drawn at it);
    right, how many filters are densest in each region. Silent filters (NaN rows) are left
    out and counted in the title."""
    live = preference.dropna()
    long = live.clip(lower=floor).melt(var_name="region", value_name="ratio")
    size = (7, 0.45 * live.shape[1] + 1.4)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=size, width_ratios=(2.2, 1), sharey=True, layout="constrained"
    )
    sns.boxplot(long, x="ratio", y="region", ax=left, color="0.88", fliersize=0, linewidth=0.8,
                log_scale=2)  # fmt: skip
    sns.stripplot(long, x="ratio", y="region", ax=left, size=2.5, color="C0", alpha=0.6,
                  jitter=0.25, log_scale=2)  # fmt: skip
    _ratio_axis(left)
    left.axvline(1, color="0.3", lw=0.8, ls="--")
    left.text(1, 1.01, "1 = no preference", fontsize=7, ha="center", va="bottom", color="0.3",
              transform=left.get_xaxis_transform())  # fmt: skip
    left.set(xlabel="activation density in the region ÷ over the face", ylabel="")
    left.grid(axis="x", alpha=0.3)
    counts = live.idxmax(axis=1).value_counts().reindex(live.columns, fill_value=0)
    right.barh(range(len(counts)), counts.to_numpy(), color="C0", height=0.6)
    for k, count in enumerate(counts):
        right.text(count, k, f" {count}", va="center", fontsize=7)
    right.set(xlabel="filters densest there (count)")
    right.set_xlim(0, max(1, counts.max()) * 1.25)
    silent = len(preference) - len(live)
    fig.suptitle(f"{layer}: {len(live)} filters" + (f" ({silent} silent on every face, left out)"
                                                    if silent else ""), fontsize=9)  # fmt: skip
    save_figure(fig, save)
    return fig


def members_vs_ensemble(
    members: pd.DataFrame,
    highlighted: dict[str, pd.DataFrame],
    metric: str = "recall",
    save: str | None = None,
) -> plt.Figure:
    """Per row of ``members`` (e.g. an emotion): every member's score (a column each) as a grey
    dot, and each ``highlighted`` series (label → frame with ``value``, ``low``, ``high`` per
    row, e.g. the best single member and the ensemble) as a coloured point with its 95 %
    interval. Scores in %; the legend sits below the data."""
    rows = list(members.index)
    fig, ax = plt.subplots(figsize=(6, 0.42 * len(rows) + 1.4), layout="constrained")
    y = np.arange(len(rows))
    values = 100 * members.to_numpy(float)
    ax.scatter(values.ravel(), np.repeat(y, values.shape[1]), s=10, color="0.6", alpha=0.7,
               label=f"members ({members.shape[1]})", zorder=2)  # fmt: skip
    offsets = np.linspace(-0.22, 0.22, len(highlighted)) if len(highlighted) > 1 else [0.0]
    for (label, series), offset, colour in zip(highlighted.items(), offsets, ("C0", "C3", "C2"),
                                               strict=False):  # fmt: skip
        part = 100 * series.loc[rows, ["value", "low", "high"]].to_numpy(float)
        ax.errorbar(part[:, 0], y + offset, xerr=[part[:, 0] - part[:, 1], part[:, 2] - part[:, 0]],
                    fmt="o", color=colour, markersize=4, elinewidth=1.2, capsize=2, label=label,
                    zorder=3)  # fmt: skip
    ax.set_yticks(y, rows)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(f"{metric} (%, higher is better; bars: 95 % bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=len(highlighted) + 1, fontsize=7)
    save_figure(fig, save)
    return fig


def label_efficiency(
    curve: pd.DataFrame,
    spread: pd.DataFrame | None = None,
    spread_fraction: float | None = None,
    seed: int | None = None,
    inits: tuple[str, str] = ("simclr", "random"),
    save: str | None = None,
) -> plt.Figure:
    """The label-efficiency curve (``curve``: one row per fraction of the Training labels, a
    column per start in ``inits`` with ``<start>_low`` / ``<start>_high``, and ``gain`` =
    first start − second with ``gain_low`` / ``gain_high``, as
    ``fer_utils.label_curve.LabelCurve.measure`` gives it). Left: accuracy (%) against the
    fraction (log axis), one line per start, with 95 % bootstrap intervals over the test
    faces. Right: the gain in percentage points with its paired interval. ``spread`` (one row
    per seed: a column per start and ``gain``) adds every seed's run at ``spread_fraction`` as
    grey dots: the seed-to-seed spread the intervals do not cover."""
    x = 100 * curve.index.to_numpy(float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(7, 3.1), layout="constrained")
    for k, (init, colour) in enumerate(zip(inits, ("C0", "C1", "C2"), strict=False)):
        nudge = 1 + 0.04 * (k - (len(inits) - 1) / 2)  # side by side, not on top of each other
        value, low, high = (100 * curve[c].to_numpy(float) for c in (init, f"{init}_low",
                                                                       f"{init}_high"))  # fmt: skip
        label = init + (f" (seed {seed})" if seed is not None else "")
        left.errorbar(x * nudge, value, yerr=[value - low, high - value], fmt="-o", color=colour,
                      markersize=4, capsize=2, label=label)  # fmt: skip
        if spread is not None and init in spread:
            at = np.full(len(spread), 100 * spread_fraction * nudge)
            left.scatter(at, 100 * spread[init], s=12, color="0.5", zorder=3,
                         label="each seed" if k == 0 else None)  # fmt: skip
    gain, low, high = (100 * curve[c].to_numpy(float) for c in ("gain", "gain_low", "gain_high"))
    right.errorbar(x, gain, yerr=[gain - low, high - gain], fmt="-o", color="C2", markersize=4,
                   capsize=2, label="95 % paired bootstrap")  # fmt: skip
    if spread is not None:
        right.scatter(np.full(len(spread), 100 * spread_fraction), 100 * spread["gain"], s=12,
                      color="0.5", zorder=3, label="each seed")  # fmt: skip
    right.axhline(0, color="0.3", lw=0.8, ls="--")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{t:g}" for t in x])
        ax.minorticks_off()
        ax.set_xlabel("Training labels used (%, log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    left.set_ylabel("PrivateTest accuracy (%, higher is better)")
    right.set_ylabel(f"{inits[0]} − {inits[1]} (percentage points)")
    save_figure(fig, save)
    return fig


def faithfulness(table: pd.DataFrame, save: str | None = None) -> plt.Figure:
    """Each method's deletion and insertion AUC minus the random map's on the same faces, with
    the 95 % bootstrap interval of the paired difference (``explain.faithfulness_table``); one
    row of panels per perturbation, the methods in one order throughout. Left of 0 is better
    for deletion, right for insertion; green markers beat random (the interval excludes 0 on
    the better side), red ones lose to it (it excludes 0 on the worse side), open ones are
    within noise of it."""
    table = table[table.index != "random"]
    perturbations = list(dict.fromkeys(table.perturbation))
    order = list(dict.fromkeys(table.index[table.perturbation == perturbations[0]]))
    fig, axes = plt.subplots(
        len(perturbations), 2, figsize=(7, 1.3 + 0.26 * len(table)), sharex="col", squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for row, perturbation in zip(axes, perturbations, strict=True):
        part = table[table.perturbation == perturbation].reindex(order)
        y = np.arange(len(part))
        for ax, test, better in zip(row, ("deletion", "insertion"), ("← better", "better →"),
                                    strict=True):  # fmt: skip
            diff = part[f"{test}_vs_random"].to_numpy()
            low = part[f"{test}_vs_random_low"].to_numpy()
            high = part[f"{test}_vs_random_high"].to_numpy()
            beats = part[f"{test}_beats_random"].to_numpy(bool)
            loses = part[f"{test}_loses_random"].to_numpy(bool)
            noise = ~beats & ~loses
            ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="none", ecolor="0.4")
            ax.scatter(diff[beats], y[beats], color="C2", zorder=3, label="beats random")
            ax.scatter(diff[loses], y[loses], color="C3", marker="s", zorder=3,
                       label="loses to random")  # fmt: skip
            ax.scatter(diff[noise], y[noise], facecolor="white", edgecolor="0.3", zorder=3,
                       label="within noise")  # fmt: skip
            ax.axvline(0, color="0.5", lw=0.8)
            ax.set_yticks(y, part.index, fontsize=7)
            ax.set_title(f"{test}, pixels → {perturbation} ({better})", fontsize=8)
            ax.grid(axis="x", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("AUC − random map's AUC\n(class probability × share of pixels)", fontsize=8)
    handles = [  # every kind, whichever panels hold it
        plt.Line2D([], [], ls="", marker="o", color="C2", label="beats random"),
        plt.Line2D([], [], ls="", marker="s", color="C3", label="loses to random"),
        plt.Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label="within noise"),
    ]
    title = "95 % paired bootstrap interval vs the random map:"
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, title=title,
               title_fontsize=7)  # fmt: skip
    save_figure(fig, save)
    return fig


def reliability_diagram(
    panels: dict, split: str = "PrivateTest", save: str | None = None
) -> plt.Figure:
    """Reliability diagrams side by side, one per entry of ``panels`` (title →
    :class:`fer_utils.calibration.Reliability`, e.g. before and after calibration): a bar per
    confidence bin at its faces' accuracy, the gap up (or down) to their mean confidence
    hatched, the diagonal where confidence equals accuracy; below, how many faces fall in each
    bin. The legend above gives each panel's ECE."""
    fig, axes = plt.subplots(
        2, len(panels), figsize=(3.4 * len(panels) + 0.2, 4.6), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": (3, 1)},
    )  # fmt: skip
    handles = []
    for column, (title, curve) in enumerate(panels.items()):
        top, bottom = axes[0, column], axes[1, column]
        left, width, filled = curve.edges[:-1], np.diff(curve.edges), curve.count > 0
        accuracy, confidence = curve.accuracy[filled], curve.confidence[filled]
        handles.append(top.bar(left[filled], accuracy, width[filled], align="edge",
                               color=f"C{2 * column}", edgecolor="white",
                               label=f"{title}: accuracy, ECE {curve.ece:.3f}"))  # fmt: skip
        gap = top.bar(left[filled], confidence - accuracy, width[filled], bottom=accuracy,
                      align="edge", color="none", edgecolor="C3", hatch="///", linewidth=0.6,
                      label="gap to the bin's mean confidence")  # fmt: skip
        (diagonal,) = top.plot([0, 1], [0, 1], "--", color="0.3", linewidth=1,
                               label="confidence = accuracy")  # fmt: skip
        top.set(xlim=(0, 1), ylim=(0, 1), title=title)
        bottom.bar(left, curve.count, width, align="edge", color="0.55", edgecolor="white")
        bottom.set_xlabel("confidence (largest probability)")
    axes[0, 0].set_ylabel("accuracy (fraction right)")
    axes[1, 0].set_ylabel("faces (count)")
    most = max(curve.count.max() for curve in panels.values())
    for bottom in axes[1]:  # one count scale, so the panels' bins compare
        bottom.set_ylim(0, 1.05 * most)
    fig.legend(handles=[*handles, gap, diagonal], loc="upper center", ncols=2, fontsize=7.5,
               title=f"Reliability on {split} ({len(curve.count)} bins)",
               title_fontsize=9, frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 0.87))
    save_figure(fig, save)
    return fig
