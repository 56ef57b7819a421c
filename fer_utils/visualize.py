"""Figures. Each function draws what it is given and, with ``save=NAME``, writes
``figures/NAME.png`` at print quality; nothing here computes new results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from fer_utils.config import EMOTIONS, figures_dir

DPI = 200


def save_figure(fig: plt.Figure, name: str | None) -> Path | None:
    """Write ``fig`` to ``figures/<name>.png`` (200 dpi, tight) and return the path."""
    if name is None:
        return None
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def class_balance(counts: pd.DataFrame, save: str | None = None) -> plt.Figure:
    """Grouped bars of images per emotion, one colour per split (``Dataset.counts()``)."""
    shares = counts.drop(columns="total", errors="ignore")
    long = shares.reset_index().melt(id_vars="split", var_name="emotion", value_name="images")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.barplot(long, x="emotion", y="images", hue="split", ax=ax)
    ax.set_title("Images per emotion and split")
    save_figure(fig, save)
    return fig


def face_grid(
    images: np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    suptitle: str | None = None,
    save: str | None = None,
) -> plt.Figure:
    """Faces in a grid (grey, 0–255 unless the values are not in that range), with titles."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.45 * nrows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            image = images[k]
            in_range = np.nanmin(image) >= 0 and np.nanmax(image) <= 255
            ax.imshow(
                image, cmap="gray", vmin=0 if in_range else None, vmax=255 if in_range else None
            )
            if titles is not None:
                ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
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


def mean_faces(faces: np.ndarray, save: str | None = None) -> plt.Figure:
    """The mean face of each emotion (top) and its difference from the mean of all (bottom)."""
    overall = np.nanmean(faces, axis=0)
    fig, axes = plt.subplots(2, len(EMOTIONS), figsize=(1.6 * len(EMOTIONS), 3.6))
    limit = np.nanmax(np.abs(faces - overall))
    for k, name in enumerate(EMOTIONS):
        axes[0, k].imshow(faces[k], cmap="gray", vmin=0, vmax=255)
        axes[0, k].set_title(name, fontsize=9)
        axes[1, k].imshow(faces[k] - overall, cmap="RdBu_r", vmin=-limit, vmax=limit)
        for ax in axes[:, k]:
            ax.axis("off")
    axes[1, 0].set_title("minus mean face", fontsize=8, loc="left")
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def distributions(
    stats: pd.DataFrame, columns: Sequence[str], by: str = "emotion", save: str | None = None
) -> plt.Figure:
    """One box plot per column of ``stats``, grouped by ``by``."""
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.4))
    for ax, column in zip(np.atleast_1d(axes), columns, strict=True):
        sns.boxplot(stats, x=by, y=column, ax=ax, fliersize=1)
        ax.tick_params(axis="x", rotation=45)
        ax.set_title(column.replace("_", " "))
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def heatmap(
    table: pd.DataFrame,
    title: str,
    normalize_rows: bool = True,
    fmt: str = ".2f",
    save: str | None = None,
) -> plt.Figure:
    """A labelled heatmap of a table (row-normalised to shares by default), e.g. a confusion
    matrix or an agreement table."""
    values = table.div(table.sum(axis=1).replace(0, np.nan), axis=0) if normalize_rows else table
    fig, ax = plt.subplots(figsize=(0.9 * table.shape[1] + 2, 0.6 * table.shape[0] + 1.5))
    sns.heatmap(values, annot=True, fmt=fmt, cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
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
    fig, axes = plt.subplots(
        len(cells), ncols, figsize=(1.25 * ncols + 1.5, 1.55 * len(cells)), squeeze=False
    )
    for r, (name, row) in enumerate(zip(examples, cells, strict=True)):
        axes[r, 0].text(-0.15, 0.5, name.replace("_", " "), transform=axes[r, 0].transAxes,
                        ha="right", va="center", fontsize=9)  # fmt: skip
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
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for (name, history), colour in zip(histories.items(), sns.color_palette(), strict=False):
        if history.empty:
            continue
        epochs = history["epoch"] + 1
        for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
            ax.plot(epochs, history[metric], "--", color=colour, label=f"{name} train")
            ax.plot(epochs, history[f"val_{metric}"], color=colour, label=f"{name} PublicTest")
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(metric)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def mistakes(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, indices: np.ndarray,
    ncols: int = 8, save: str | None = None,
) -> plt.Figure:  # fmt: skip
    """Faces at ``indices`` titled 'true → predicted (confidence)'."""
    predicted = probabilities.argmax(axis=1)
    titles = [
        f"{EMOTIONS[labels[i]]} → {EMOTIONS[predicted[i]]}\n({probabilities[i, predicted[i]]:.2f})"
        for i in indices
    ]
    return face_grid(images[indices], titles, ncols=ncols, save=save)


def grouped_bars(
    table: pd.DataFrame, title: str, ylabel: str, save: str | None = None
) -> plt.Figure:
    """One group of bars per row of ``table`` (e.g. emotions), one bar per column (e.g. models)."""
    long = table.rename_axis("row").reset_index().melt(id_vars="row", var_name="series")
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(table)), 3.8))
    sns.barplot(long, x="row", y="value", hue="series", ax=ax)
    ax.set(title=title, xlabel="", ylabel=ylabel)
    ax.legend(fontsize="small", ncols=2)
    save_figure(fig, save)
    return fig


def lines(table: pd.DataFrame, title: str, ylabel: str, save: str | None = None) -> plt.Figure:
    """One line with markers per column of ``table`` against its index."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    table.plot(ax=ax, marker="o")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3)
    save_figure(fig, save)
    return fig


def map_grid(
    rows: Sequence[np.ndarray],
    row_titles: Sequence[str],
    column_titles: Sequence[str] | None = None,
    under: np.ndarray | None = None,
    save: str | None = None,
) -> plt.Figure:
    """A grid with one row per stack of images (N, 48, 48): the first row as grey faces, the
    others as heatmaps (each image scaled to its own range), drawn over the faces ``under``
    when given."""
    n = len(rows[0])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.25 * n + 1.2, 1.3 * len(rows)), squeeze=False)
    for r, (stack, title) in enumerate(zip(rows, row_titles, strict=True)):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.imshow(stack[c], cmap="gray", vmin=0, vmax=255)
            else:
                if under is not None:
                    ax.imshow(under[c], cmap="gray", vmin=0, vmax=255)
                ax.imshow(stack[c], cmap="jet" if under is not None else "magma",
                          alpha=0.5 if under is not None else 1.0)  # fmt: skip
            if r == 0 and column_titles is not None:
                ax.set_title(column_titles[c], fontsize=8)
        axes[r, 0].set_ylabel(title, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def region_overlay(
    face: np.ndarray, regions: dict[str, np.ndarray], save: str | None = None
) -> plt.Figure:
    """A face with each facial region's mask outlined in its own colour."""
    fig, ax = plt.subplots(figsize=(3, 3))
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
    fig, axes = plt.subplots(rows, n, figsize=(1.1 * n + 1.3, 1.15 * rows), squeeze=False)
    for r, (name, faces) in enumerate(variants.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.squeeze(faces[c]), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and column_titles is not None:
                ax.set_title(column_titles[c], fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def robustness_curves(table: pd.DataFrame, save: str | None = None) -> plt.Figure:
    """Accuracy against shift strength, one panel per lighting shift and one line per model
    (the long table of :func:`fer_utils.evaluation.lighting_robustness`)."""
    shifts = list(dict.fromkeys(table["shift"]))
    fig, axes = plt.subplots(1, len(shifts), figsize=(3.1 * len(shifts), 3.4), sharey=True)
    for ax, shift in zip(np.atleast_1d(axes), shifts, strict=True):
        part = table[table["shift"] == shift]
        sns.lineplot(part, x="strength", y="accuracy", hue="model", marker="o", ax=ax,
                     legend=ax is np.atleast_1d(axes)[-1])  # fmt: skip
        ax.set(title=shift.replace("_", " "), xlabel="shift strength")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def faithfulness(table: pd.DataFrame, save: str | None = None) -> plt.Figure:
    """Each method's deletion and insertion AUC minus the random map's on the same faces, with
    the 95 % bootstrap interval of the paired difference (``explain.faithfulness_table``); one
    row of panels per perturbation. Left of 0 is better for deletion, right for insertion;
    filled markers beat random (the interval excludes 0 on the better side)."""
    table = table[table.index != "random"]
    perturbations = list(dict.fromkeys(table.perturbation))
    fig, axes = plt.subplots(
        len(perturbations), 2, figsize=(7, 1.1 + 0.28 * len(table)), sharex="col", squeeze=False
    )
    for row, perturbation in zip(axes, perturbations, strict=True):
        part = table[table.perturbation == perturbation]
        y = np.arange(len(part))
        for ax, test, better in zip(row, ("deletion", "insertion"), ("← better", "better →"),
                                    strict=True):  # fmt: skip
            diff = part[f"{test}_vs_random"].to_numpy()
            low, high = part[f"{test}_vs_random_low"], part[f"{test}_vs_random_high"]
            beats = part[f"{test}_beats_random"].to_numpy(bool)
            ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="none", ecolor="0.4")
            ax.scatter(diff[beats], y[beats], color="C2", zorder=3, label="beats random")
            ax.scatter(diff[~beats], y[~beats], facecolor="white", edgecolor="0.3", zorder=3,
                       label="does not")  # fmt: skip
            ax.axvline(0, color="0.5", lw=0.8)
            ax.set_yticks(y, part.index)
            ax.set_title(f"{test}, {perturbation} ({better})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("AUC − random map's AUC (class probability)")
    axes[0, 1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, save)
    return fig
