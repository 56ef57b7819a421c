"""Explanations of a face classifier: one interface for every attribution method, faithfulness
metrics (deletion / insertion AUC under several perturbations, paired against a random map; the
model-randomisation check), area-normalised facial-region scores and signed LIME maps.

Every method returns maps of shape (N, 48, 48): float32, non-negative, each scaled to a maximum
of 1 (an all-zero map stays zero), for the requested classes (default: the predicted ones).
Grad-CAM, Grad-CAM++, Score-CAM, saliency and SmoothGrad come from tf-keras-vis 0.8.7, which
works under Keras 3 (tests/test_explain.py checks its Grad-CAM against a hand-written
GradientTape one); Integrated Gradients and occlusion are written here with TensorFlow / NumPy,
as no library offers them for Keras 3; the LIME variants use the ``lime`` package.

Models are explained as float32 copies with nested models (a transfer backbone, the network
behind an illumination correction) inlined, so that their layers can be read; a model with an
illumination correction in front, which has no gradient, as the network behind it shown the
corrected faces.
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import joblib
import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
from tf_keras_vis.saliency import Saliency
from tf_keras_vis.scorecam import Scorecam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from fer_utils.calibration import uncalibrated
from fer_utils.config import EMOTIONS, IMAGE_SIZE, checkpoints_dir
from fer_utils.data import as_batch
from fer_utils.evaluation import bootstrap_mean_ci, verdict
from fer_utils.feature_maps import quiet_keras_vis, upsampled
from fer_utils.models import IlluminationCorrection, flat_layers, is_nested
from fer_utils.progress import progress_bar

CAM_METHODS = ("gradcam", "gradcam++", "scorecam")  # the methods that take a ``layer``

GREY = 128.0  # what occlusion, LIME and Score-CAM put in place of a hidden region (~FER mean)
BLUR_SIGMA = 5.0  # px; the "blur" perturbation (insertion's default start, as RISE)

# Segmentations giving ~45 segments per aligned 48×48 face (median over sample faces; LIME gets
# RGB in 0–1): felzenszwalb 47, slic 44, quickshift 43.
SEGMENTATIONS = {
    "lime_felzenszwalb": ("felzenszwalb", {"scale": 50, "sigma": 0.5, "min_size": 10}),
    "lime_slic": ("slic", {"n_segments": 50, "compactness": 10, "sigma": 1, "start_label": 0}),
    "lime_quickshift": ("quickshift", {"kernel_size": 2, "max_dist": 4, "ratio": 0.5}),
}

# Facial regions on the aligned FER2013 grid, as half-open (rows, cols) slices: the faces are
# roughly centred, brows above the eyes, the nose narrower than the face, the mouth below it.
REGIONS = {
    "brows": (slice(12, 17), slice(8, 40)),
    "eyes": (slice(17, 24), slice(8, 40)),
    "nose": (slice(24, 33), slice(16, 32)),
    "mouth": (slice(33, 42), slice(12, 36)),
}

MapFunction = Callable[[keras.Model, np.ndarray, np.ndarray], np.ndarray]


def _float32_config(config: object) -> object:
    """``config`` with every dtype policy replaced by float32 (recursively, nested models too)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy":
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    return config


def _rebuilt(model: keras.Model, config: dict) -> keras.Model:
    """A new model from ``config`` with ``model``'s weights."""
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` rebuilt in float32 with the same weights (``model`` itself if already float32),
    so that gradients and maps are not computed in bfloat16, and without a calibration
    :class:`~fer_utils.calibration.Temperature`: maps are of the network's logits, which the
    temperature only divides by one constant (the predicted emotion is the same)."""
    model, _ = uncalibrated(model)
    config = model.get_config()
    float32 = _float32_config(config)
    return model if float32 == config else _rebuilt(model, float32)


def _inline(layer: keras.layers.Layer, *args, **kwargs):
    """Call ``layer`` as ``keras.models.clone_model`` would, but a nested model by calling its
    layers one by one (recursively). The nested call's own arguments (``training=False`` of a
    backbone) are dropped: the copy is only ever run for inference."""
    if not is_nested(layer):
        return layer(*args, **kwargs)
    called = {}

    def call(inner: keras.layers.Layer, *inner_args, **inner_kwargs):
        called[inner.name] = _inline(inner, *inner_args, **inner_kwargs)
        return called[inner.name]

    keras.models.clone_model(layer, args[0], clone_function=lambda inner: inner, call_function=call)
    outputs = [called[name] for name in layer.output_names]
    return outputs[0] if len(outputs) == 1 else outputs


def _inlined(model: keras.Model) -> keras.Model:
    """``model`` with its nested models inlined (see :func:`_inline`), sharing its layers."""
    return keras.models.clone_model(
        model, clone_function=lambda layer: layer, call_function=_inline
    )


def probabilities(model: keras.Model, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's class probabilities, by direct calls (``predict`` costs ~0.1 s a call, too
    much for the many small batches of the perturbation methods)."""
    faces = as_batch(faces)
    batches = (faces[i : i + batch_size] for i in range(0, len(faces), batch_size))
    return np.concatenate([keras.ops.convert_to_numpy(model(b, training=False)) for b in batches])


def class_probabilities(model: keras.Model, faces: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each face's probability of its class, (N,)."""
    return probabilities(model, faces)[np.arange(len(classes)), classes]


def predicted_classes(model: keras.Model, faces: np.ndarray) -> np.ndarray:
    """The model's most probable class per face."""
    return probabilities(model, faces).argmax(axis=1)


def cam_layer(model: keras.Model) -> str:
    """Name of the layer the CAM methods read by default: the output of the last convolution
    block, i.e. the last ``Conv2D`` (nested models included) and the layers of the same output
    shape right after it (BatchNorm, ReLU, a residual add). Not the convolution itself: in a
    conv–BN–ReLU block its output is mostly negative, and Score-CAM, whose channel weights are
    all positive, then sums to a map ≤ 0 everywhere, all zero after its ReLU."""
    layers = flat_layers(model)
    convs = [k for k, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"{model.name} has no Conv2D layer")
    shape = layers[convs[-1]].output.shape
    block = itertools.takewhile(lambda layer: layer.output.shape == shape, layers[convs[-1] :])
    return list(block)[-1].name


def normalise(maps: np.ndarray) -> np.ndarray:
    """Maps made finite and non-negative, each divided by its maximum (all-zero stays zero)."""
    maps = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0, None)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


def _tf_keras_vis(visualiser: type, model, faces, classes, **call_options) -> np.ndarray:
    """Run a tf-keras-vis visualiser on a copy of ``model`` with a linear (logit) output (its
    output layer must be a top-level one: see :func:`_prepared`)."""
    # Score-CAM too: tf-keras-vis 0.8 applies its own softmax to the outputs, so a linear output
    # makes its channel weights the class probabilities (the paper's), not a softmax of them.
    explainer = visualiser(model, model_modifier=ReplaceToLinear(), clone=True)
    with quiet_keras_vis():
        return explainer(CategoricalScore(classes.tolist()), faces, **call_options)


def _cam(
    visualiser: type, model, faces, classes, layer: str | None = None, **options
) -> np.ndarray:
    """Grad-CAM-like maps of ``layer`` (default: :func:`cam_layer`), upsampled to the input by
    a bilinear resize that keeps each cell over the pixels it covers (tf-keras-vis' own
    corner-to-corner zoom stretches the grid: a 3×3 one's centres land on pixels 0, 23.5 and
    47, not 7.5, 23.5 and 39.5)."""
    cams = _tf_keras_vis(
        visualiser,
        model,
        faces,
        classes,
        penultimate_layer=layer or cam_layer(model),
        seek_penultimate_conv_layer=False,
        expand_cam=False,
        normalize_cam=False,
        **options,
    )
    return upsampled(np.asarray(cams))


def _gradcam(model, faces, classes, layer=None) -> np.ndarray:
    return _cam(Gradcam, model, faces, classes, layer)


def _gradcam_plus_plus(model, faces, classes, layer=None) -> np.ndarray:
    return _cam(GradcamPlusPlus, model, faces, classes, layer)


def _scorecam(model, faces, classes, layer=None, channels: int = -1) -> np.ndarray:
    """Score-CAM; ``channels`` > 0 keeps only that many highest-variance channels (Faster).

    Each channel's mask keeps the face where the channel is active and hides the rest. The
    paper masks normalised inputs, so hidden pixels become the mean; tf-keras-vis multiplies
    the input by the mask, which on 0–255 faces would make them black, far from any face. So
    it is given the faces minus :data:`GREY` and a model that adds :data:`GREY` back."""
    centred_faces = keras.Input(faces.shape[1:])
    restored = keras.layers.Rescaling(1.0, offset=GREY, name="add_grey")(centred_faces)
    centred = _inlined(keras.Model(centred_faces, model(restored)))
    return _cam(Scorecam, centred, faces - np.float32(GREY), classes, layer, max_N=channels)


def _saliency(model, faces, classes) -> np.ndarray:
    """|∂ logit / ∂ pixel| (Simonyan et al. 2014)."""
    return _tf_keras_vis(Saliency, model, faces, classes, normalize_map=False)


def _smoothgrad(model, faces, classes, samples: int = 20, noise: float = 0.2) -> np.ndarray:
    """Saliency averaged over ``samples`` noisy copies, noise σ = ``noise`` × the face's range."""
    return _tf_keras_vis(
        Saliency,
        model,
        faces,
        classes,
        smooth_samples=samples,
        smooth_noise=noise,
        normalize_map=False,
    )


def _class_gradients(model, faces: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """∂ p(class) / ∂ faces for a batch, by one gradient tape."""
    faces = tf.convert_to_tensor(faces)
    with tf.GradientTape() as tape:
        tape.watch(faces)
        scores = tf.gather(model(faces, training=False), classes, axis=1, batch_dims=1)
    return tape.gradient(scores, faces).numpy()


def _integrated_gradients(model, faces, classes, steps: int = 32, batch: int = 256) -> np.ndarray:
    """Integrated Gradients of the class probability from a black baseline (Sundararajan et
    al. 2017), midpoint rule with ``steps`` steps, several faces per gradient batch; negative
    attributions are dropped by :func:`normalise`."""
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)[None, :, None, None, None]
    per_call = max(1, batch // steps)
    maps = []
    for i in range(0, len(faces), per_call):
        chunk, chunk_classes = faces[i : i + per_call], classes[i : i + per_call]
        path = (alphas * chunk[:, None]).reshape(-1, *faces.shape[1:])
        gradients = _class_gradients(model, path, np.repeat(chunk_classes, steps))
        mean = gradients.reshape(len(chunk), steps, *faces.shape[1:]).mean(axis=1)
        maps.append((chunk * mean)[..., 0])
    return np.concatenate(maps)


def _occlusion(model, faces, classes, patch: int = 8, stride: int = 4) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): the drop in the class probability when a
    grey ``patch``×``patch`` square replaces the region, averaged over the squares covering
    each pixel; all squares of a face in one batch."""
    starts = range(0, IMAGE_SIZE - patch + 1, stride)
    windows = [(slice(r, r + patch), slice(c, c + patch)) for r in starts for c in starts]
    masks = np.zeros((len(windows), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=bool)
    for mask, window in zip(masks, windows, strict=True):
        mask[window] = True
    counts = masks.sum(axis=0)[..., 0]
    original = class_probabilities(model, faces, classes)
    maps = np.zeros(faces.shape[:3], dtype=np.float32)
    for i, (face, cls) in enumerate(zip(faces, classes, strict=True)):
        occluded = np.where(masks, np.float32(GREY), face[None])
        drops = original[i] - class_probabilities(model, occluded, np.full(len(windows), cls))
        maps[i] = np.tensordot(drops, masks[..., 0], axes=1)
    return maps / np.maximum(counts, 1)


def _lime_fits(
    model, faces, classes, method: str, num_samples: int = 500, seed: int = 0
) -> list[lime_image.ImageExplanation]:
    """LIME (Ribeiro et al. 2016) over the superpixels of ``method`` (see
    :data:`SEGMENTATIONS`): one local linear model of each face's class probability. Hidden
    segments turn grey, as in occlusion (LIME's default, each segment's own mean, hides nothing
    of a uniform bright region). LIME wants RGB: it gets the grey face repeated to 3 channels in
    0–1, and the classifier turns its samples back into (N, 48, 48, 1) 0–255."""
    algorithm, params = SEGMENTATIONS[method]
    segmenter = SegmentationAlgorithm(algorithm, random_seed=seed, **params)
    explainer = lime_image.LimeImageExplainer(random_state=seed)

    def classify(images: np.ndarray) -> np.ndarray:
        return probabilities(model, images[..., :1] * 255)

    # lime 0.2 always shows a tqdm bar per face and has no switch for it: replace its tqdm.
    with mock.patch.object(lime_image, "tqdm", lambda rows: rows):
        return [
            explainer.explain_instance(
                np.repeat(face / 255, 3, axis=-1).astype(np.float64),
                classify,
                labels=(int(cls),),
                hide_color=GREY / 255,
                top_labels=None,
                num_samples=num_samples,
                batch_size=num_samples,
                segmentation_fn=segmenter,
                random_seed=seed,
            )
            for face, cls in zip(faces, classes, strict=True)
        ]


def _painted(fit: lime_image.ImageExplanation, cls: int) -> np.ndarray:
    """The signed weights of ``cls``'s linear model painted onto their superpixels."""
    weights = np.zeros(fit.segments.max() + 1)
    for segment, weight in fit.local_exp[cls]:
        weights[segment] = weight
    return weights[fit.segments]


def _lime(model, faces, classes, method: str, num_samples: int = 500, seed: int = 0) -> np.ndarray:
    """LIME's signed superpixel weights; :func:`explain` keeps the positive ones."""
    fits = _lime_fits(model, faces, classes, method, num_samples, seed)
    return np.stack([_painted(fit, int(cls)) for fit, cls in zip(fits, classes, strict=True)])


EXPLAINERS: dict[str, Callable[..., np.ndarray]] = {
    "gradcam": _gradcam,
    "gradcam++": _gradcam_plus_plus,
    "scorecam": _scorecam,
    "saliency": _saliency,
    "smoothgrad": _smoothgrad,
    "integrated_gradients": _integrated_gradients,
    "occlusion": _occlusion,
    **{method: partial(_lime, method=method) for method in SEGMENTATIONS},
}
METHODS = tuple(EXPLAINERS)  # gradcam, gradcam++, scorecam, saliency, … lime_quickshift


def _prepared(
    model: keras.Model, faces: np.ndarray, classes: np.ndarray | int | None
) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """The model every method explains, the faces it is shown and one class per face
    (``classes`` broadcast, default: the predicted ones). The model is a float32 copy of
    ``model`` (same weights, layers of its own, same predictions) with the layers of nested
    models (a transfer backbone, the network behind an illumination correction) inlined, so
    that any of them can be read. An :class:`~fer_utils.models.IlluminationCorrection` in front
    runs in NumPy and has no gradient: every method explains the network behind it, shown the
    corrected faces (the same pixel grid)."""
    model, faces = _rebuilt(model, _float32_config(model.get_config())), as_batch(faces)
    first = model.layers[1]  # after the input
    if isinstance(first, IlluminationCorrection):
        faces = keras.ops.convert_to_numpy(first(faces))
        model = keras.Model(first.output, model.output)
    model = _inlined(model)
    if classes is None:
        classes = predicted_classes(model, faces)
    return model, faces, np.broadcast_to(np.asarray(classes, dtype=int), (len(faces),))


def explain(
    model: keras.Model,
    faces: np.ndarray,
    method: str,
    classes: np.ndarray | int | None = None,
    layer: str | None = None,
    **options,
) -> np.ndarray:
    """Maps (N, 48, 48) of ``method`` (one of :data:`METHODS`) for ``classes`` (one per face or
    one for all; default: the predicted ones). ``layer`` names the layer of the CAM methods, also
    one inside a nested model (default: :func:`cam_layer`; for Score-CAM name a block's output,
    e.g. its ReLU, not a raw convolution); ``options`` go to the method (e.g. ``steps``,
    ``num_samples``, ``channels``)."""
    if method not in EXPLAINERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if layer is not None:
        if method not in CAM_METHODS:
            raise ValueError(f"{method} takes no layer; only {', '.join(CAM_METHODS)} do")
        options["layer"] = layer
    model, faces, classes = _prepared(model, faces, classes)
    return normalise(EXPLAINERS[method](model, faces, classes, **options))


def random_maps(n: int, seed: int = 0) -> np.ndarray:
    """Uniform random maps (n, 48, 48): the baseline every method should beat."""
    return np.random.default_rng(seed).random((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)


def blurred(faces: np.ndarray) -> np.ndarray:
    """Faces (N, 48, 48, 1) with each one Gaussian-blurred by :data:`BLUR_SIGMA` pixels."""
    return gaussian_filter(as_batch(faces), sigma=(0, BLUR_SIGMA, BLUR_SIGMA, 0))


# What a removed pixel becomes (deletion) and what insertion starts from, for faces (N, 48, 48,
# 1): black (0) as RISE deletes, far from any face; the blurred face (``blurred``), which keeps
# a blurred copy of the evidence; the mean grey (GREY), as occlusion and LIME hide regions.
PERTURBATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "black": np.zeros_like,
    "blur": blurred,
    "grey": partial(np.full_like, fill_value=GREY),
}


def _perturbation_auc(model, start, end, maps, classes, steps: int) -> np.ndarray:
    """Per-face area under the class probability as the pixels move from ``start`` to ``end``,
    most important (by ``maps``) first, in ``steps`` equal steps of the pixel fraction."""
    n = len(start)
    order = np.argsort(-np.asarray(maps).reshape(n, -1), axis=1, kind="stable")
    ranks = np.argsort(order, axis=1).reshape(start.shape)
    counts = np.round(np.linspace(0, ranks[0].size, steps + 1))
    curve = [class_probabilities(model, np.where(ranks < k, end, start), classes) for k in counts]
    return np.trapezoid(np.stack(curve, axis=1), dx=1 / steps, axis=1)


def deletion_auc(
    model: keras.Model,
    faces: np.ndarray,
    maps: np.ndarray,
    classes: np.ndarray,
    steps: int = 16,
    perturbation: str = "black",
) -> np.ndarray:
    """Deletion AUC per face (Petsiuk et al. 2018), lower is more faithful: the most important
    pixels are removed first, i.e. replaced as :data:`PERTURBATIONS` [``perturbation``] says."""
    faces = as_batch(faces)
    removed = PERTURBATIONS[perturbation](faces)
    return _perturbation_auc(float32_copy(model), faces, removed, maps, np.asarray(classes), steps)


def insertion_auc(
    model: keras.Model,
    faces: np.ndarray,
    maps: np.ndarray,
    classes: np.ndarray,
    steps: int = 16,
    perturbation: str = "blur",
) -> np.ndarray:
    """Insertion AUC per face (ibid.), higher is more faithful: starting from the face with every
    pixel removed (:data:`PERTURBATIONS` [``perturbation``]; by default blurred, as in RISE),
    the original pixels are put back most important first."""
    faces = as_batch(faces)
    removed = PERTURBATIONS[perturbation](faces)
    return _perturbation_auc(float32_copy(model), removed, faces, maps, np.asarray(classes), steps)


class Comparison(NamedTuple):
    """A method's AUC against the random map's, paired by face."""

    difference: float  # mean over faces of (method AUC − random AUC)
    low: float  # 95 % bootstrap interval of that mean
    high: float
    beats_random: bool  # the interval excludes 0 on the better side
    loses_random: bool  # the interval excludes 0 on the worse side


def versus_random(
    auc: np.ndarray, random_auc: np.ndarray, lower_is_better: bool, seed: int = 0
) -> Comparison:
    """Paired comparison of per-face AUCs with those of the random map on the same faces: the
    mean difference with its bootstrap interval (faces resampled, so what makes a face easy or
    hard for both cancels). ``lower_is_better``: deletion (True) or insertion (False)."""
    difference = np.asarray(auc, dtype=np.float64) - np.asarray(random_auc, dtype=np.float64)
    low, high = bootstrap_mean_ci(difference, seed=seed)
    better, worse = ("below", "above") if lower_is_better else ("above", "below")
    side = verdict(low, high)
    return Comparison(float(difference.mean()), low, high, side == better, side == worse)


def randomised(model: keras.Model, seed: int = 0) -> keras.Model:
    """A copy of ``model`` with freshly initialised weights (seeds Keras' global RNGs)."""
    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def _map_function(method: str | MapFunction, **options) -> MapFunction:
    """``method`` itself if it is a function, else :func:`explain` with that method name."""
    if callable(method):
        return method
    return lambda model, faces, classes: explain(model, faces, method, classes, **options)


def randomisation_check(
    model: keras.Model,
    faces: np.ndarray,
    method: str | MapFunction,
    seed: int = 0,
    **options,
) -> np.ndarray:
    """Model-randomisation sanity check (Adebayo et al. 2018): per-face Spearman correlation
    between the maps of the trained model and of a randomly re-initialised copy, for the same
    faces and classes (the trained model's predictions). A method that explains the model gives
    a low correlation; one that only looks at the image gives ~1. ``method`` is a name from
    :data:`METHODS` (``options`` go to it) or a function ``(model, faces, classes) -> maps``.
    A constant map has no ranks: its correlation is NaN."""
    model, faces = float32_copy(model), as_batch(faces)
    classes = predicted_classes(model, faces)
    maps = _map_function(method, **options)
    trained, random = maps(model, faces, classes), maps(randomised(model, seed), faces, classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant maps; NaN says it
        pairs = zip(trained, random, strict=True)
        return np.array([spearmanr(a.ravel(), b.ravel()).statistic for a, b in pairs])


def region_masks() -> dict[str, np.ndarray]:
    """Boolean (48, 48) masks of the facial regions in :data:`REGIONS` (disjoint)."""
    masks = {}
    for name, window in REGIONS.items():
        masks[name] = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
        masks[name][window] = True
    return masks


def _region_sums(maps: np.ndarray) -> tuple[pd.DataFrame, pd.Series]:
    """Each map's sum over each facial region and the rest ("other"), (N, 5), and the regions'
    areas in pixels."""
    masks = region_masks()
    masks["other"] = ~np.any(list(masks.values()), axis=0)
    maps = np.asarray(maps, dtype=np.float64)
    sums = pd.DataFrame({name: maps[:, mask].sum(axis=1) for name, mask in masks.items()})
    return sums, pd.Series({name: mask.sum() for name, mask in masks.items()})


def region_shares(maps: np.ndarray) -> pd.DataFrame:
    """Share of each map's total mass in each facial region and in the rest ("other"); a row
    sums to 1 (NaN for an all-zero map)."""
    sums, _ = _region_sums(maps)
    return sums.div(sums.sum(axis=1), axis=0)


def _by_class(
    values: pd.DataFrame, classes: np.ndarray | None, name: str, seed: int
) -> pd.DataFrame:
    """Tidy per-class means of each column of ``values`` (one row per face; rows with a NaN
    left out) with 95 % bootstrap intervals over the faces: class (an emotion, or "all" when
    ``classes`` is None), region, ``name``, low, high."""
    if classes is None:
        groups = pd.Categorical.from_codes(np.zeros(len(values), int), ["all"])
    else:
        groups = pd.Categorical.from_codes(np.asarray(classes), list(EMOTIONS))
    valid = values.notna().all(axis=1).to_numpy()
    rows = []
    for group, chosen in values[valid].groupby(groups[valid], observed=True):
        for region, column in chosen.items():
            low, high = bootstrap_mean_ci(column.to_numpy(), seed=seed)
            rows.append(
                {"class": group, "region": region, name: column.mean(), "low": low, "high": high}
            )
    return pd.DataFrame(rows, columns=["class", "region", name, "low", "high"])


def region_ratios(
    maps: np.ndarray, classes: np.ndarray | None = None, seed: int = 0
) -> pd.DataFrame:
    """Area-normalised attention per facial region: the region's share of a map's mass divided
    by its share of the face's area (1: as much as a uniform map puts there; above 1: more),
    averaged over the faces of each class (``classes``: one per face, e.g. the explained ones;
    None: all faces together) with 95 % bootstrap intervals. All-zero maps are left out.
    Columns: class, region (:data:`REGIONS` and "other"), ratio, low, high."""
    sums, areas = _region_sums(maps)
    ratios = sums.div(sums.sum(axis=1), axis=0) / (areas / areas.sum())
    return _by_class(ratios, classes, "ratio", seed)


@dataclass(frozen=True)
class LimeMaps:
    """Signed LIME explanations of N faces with one segmentation, each (N, 48, 48)."""

    weights: np.ndarray  # each pixel's superpixel weight, in class probability: + for, − against
    top: np.ndarray  # +1 / −1 on the top-k superpixels by |weight| (for / against), 0 elsewhere
    segments: np.ndarray  # the superpixel labels


def lime_maps(
    model: keras.Model,
    faces: np.ndarray,
    method: str = "lime_slic",
    classes: np.ndarray | int | None = None,
    top_k: int = 5,
    num_samples: int = 500,
    seed: int = 0,
) -> LimeMaps:
    """LIME's signed superpixel weights for ``classes`` (default: the predicted ones), not only
    the positive ones :func:`explain` keeps, and the ``top_k`` superpixels with the largest
    |weight| marked by sign (``lime``'s own ``get_image_and_mask``): for a two-colour figure.
    ``method`` is one of the LIME entries of :data:`METHODS`."""
    model, faces, classes = _prepared(model, faces, classes)
    fits = _lime_fits(model, faces, classes, method, num_samples, seed)
    pairs = list(zip(fits, classes.tolist(), strict=True))
    top = [
        fit.get_image_and_mask(cls, positive_only=False, num_features=top_k)[1]
        for fit, cls in pairs
    ]
    return LimeMaps(
        weights=np.stack([_painted(fit, cls) for fit, cls in pairs]).astype(np.float32),
        top=np.stack(top).astype(np.int8),
        segments=np.stack([fit.segments for fit in fits]),
    )


def lime_region_weights(
    model: keras.Model,
    faces: np.ndarray,
    classes: np.ndarray | int | None = None,
    methods: tuple[str, ...] = tuple(SEGMENTATIONS),
    num_samples: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """Per LIME segmentation (``methods``), class and facial region: the mean signed LIME weight
    of the region's pixels (each carries its superpixel's weight; > 0: the region speaks for
    the class), averaged over the faces explained for that class (``classes``, default: the
    predicted ones) with 95 % bootstrap intervals. Columns: method, class, region, weight,
    low, high."""
    model, faces, classes = _prepared(model, faces, classes)
    tables = []
    for method in methods:
        sums, areas = _region_sums(_lime(model, faces, classes, method, num_samples, seed))
        table = _by_class(sums / areas, classes, "weight", seed)
        tables.append(table.assign(method=method))
    return pd.concat(tables, ignore_index=True)[
        ["method", "class", "region", "weight", "low", "high"]
    ]


def _options(method: str, lime_samples: int) -> dict:
    return {"num_samples": lime_samples} if method.startswith("lime") else {}


def explain_all(
    model: keras.Model,
    faces: np.ndarray,
    methods: tuple[str, ...] = METHODS,
    classes: np.ndarray | None = None,
    lime_samples: int = 500,
) -> dict[str, np.ndarray]:
    """:func:`explain` with every method in ``methods``; LIME gets ``lime_samples``."""
    return {m: explain(model, faces, m, classes, **_options(m, lime_samples)) for m in methods}


def class_average_maps(
    model: keras.Model,
    faces: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    method: str = "gradcam",
    per_class: int = 200,
) -> np.ndarray:
    """For each emotion, the mean map of up to ``per_class`` correctly classified faces (7, 48,
    48); zeros for an emotion without a correct prediction."""
    means = np.zeros((len(EMOTIONS), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for k in range(len(EMOTIONS)):
        chosen = np.flatnonzero((labels == k) & (predicted == k))[:per_class]
        if len(chosen):
            means[k] = explain(model, faces[chosen], method, np.full(len(chosen), k)).mean(axis=0)
    return means


def _auc_columns(kind: str, auc: np.ndarray, random_auc: np.ndarray, seed: int) -> dict:
    """The table's columns for one kind of curve ("deletion" or "insertion") of one method."""
    comparison = versus_random(auc, random_auc, lower_is_better=kind == "deletion", seed=seed)
    return {
        f"{kind}_auc": auc.mean(),
        f"{kind}_ci": "–".join(f"{v:.3f}" for v in bootstrap_mean_ci(auc, seed=seed)),
        f"{kind}_vs_random": comparison.difference,
        f"{kind}_vs_random_low": comparison.low,
        f"{kind}_vs_random_high": comparison.high,
        f"{kind}_beats_random": comparison.beats_random,
        f"{kind}_loses_random": comparison.loses_random,
    }


def _curves(
    model: keras.Model,
    faces: np.ndarray,
    maps: np.ndarray,
    classes: np.ndarray,
    perturbations: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """Per-face deletion and insertion AUCs of ``maps`` under each perturbation, keyed
    ``"<perturbation>/<kind>"``."""
    return {
        f"{perturbation}/{kind}": curve(model, faces, maps, classes, perturbation=perturbation)
        for perturbation in perturbations
        for kind, curve in (("deletion", deletion_auc), ("insertion", insertion_auc))
    }


def _method_faithfulness(
    model: keras.Model,
    key: str,
    faces: np.ndarray,
    classes: np.ndarray,
    method: str,
    lime_samples: int,
    randomisation_faces: int,
    seed: int,
    perturbations: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """One row group of :func:`faithfulness_table`: ``method``'s AUCs (:func:`_curves`) and its
    randomisation check (``"spearman"``); the random map (``method="random"``) has no check.
    ``key`` (:func:`model_key`) stands for ``model`` in a cache's key."""
    if method == "random":
        return _curves(model, faces, random_maps(len(faces), seed), classes, perturbations)
    options = _options(method, lime_samples)
    maps = explain(model, faces, method, classes, **options)
    check = randomisation_check(model, faces[:randomisation_faces], method, seed, **options)
    return _curves(model, faces, maps, classes, perturbations) | {"spearman": check}


def model_key(model: keras.Model) -> str:
    """What a cache keys a model's explanations by: the sha256 of its weights and of this
    module's code (a changed method must not be read back from the cache)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def faithfulness_table(
    model: keras.Model,
    faces: np.ndarray,
    methods: tuple[str, ...] = METHODS,
    lime_samples: int = 500,
    randomisation_faces: int = 100,
    seed: int = 0,
    perturbations: tuple[str, ...] = tuple(PERTURBATIONS),
    cache: Path | None = None,
) -> pd.DataFrame:
    """Faithfulness of each method (and of a random map), indexed by method, one row per
    method and perturbation (:data:`PERTURBATIONS`: what deletion replaces pixels with and
    insertion starts from). Columns: ``perturbation``; per kind (``deletion``, ``insertion``)
    the mean AUC (``_auc``) with its 95 % bootstrap interval (``_ci``), and the paired
    difference from the random map on the same faces (``_vs_random``, interval ``_vs_random_low``
    – ``_vs_random_high``, :func:`versus_random`) and whether the method beats it
    (``_beats_random``) or loses to it (``_loses_random``), both beyond noise;
    ``randomisation_spearman``, the mean rank correlation of the
    randomisation check on the first ``randomisation_faces`` faces (NaN for the random map).
    Sorted by perturbation, then by insertion minus deletion AUC, best first.

    Each method's results are kept as they are finished in ``cache`` (default:
    ``checkpoints/faithfulness``, see ``FER_CHECKPOINTS``; joblib.Memory, keyed by
    :func:`model_key`, the faces and every setting): an interrupted table (the cpu profile's
    takes over an hour) resumes at the method it was computing, and a finished one is read
    back."""
    model, faces = float32_copy(model), as_batch(faces)
    classes = predicted_classes(model, faces)
    memory = joblib.Memory(cache or checkpoints_dir() / "faithfulness", verbose=0)
    compute = memory.cache(_method_faithfulness, ignore=["model"])
    settings = (lime_samples, randomisation_faces, seed, tuple(perturbations))
    key = model_key(model)
    found = {
        name: compute(model, key, faces, classes, name, *settings)
        for name in progress_bar([*methods, "random"], True, desc="faithfulness", unit="method")
    }
    rows = []
    for perturbation in perturbations:
        for name, result in found.items():
            row = {"method": name, "perturbation": perturbation}
            for kind in ("deletion", "insertion"):
                auc, random_auc = (found[m][f"{perturbation}/{kind}"] for m in (name, "random"))
                row |= _auc_columns(kind, auc, random_auc, seed)
            spearman = np.nanmean(result["spearman"]) if "spearman" in result else np.nan
            rows.append(row | {"randomisation_spearman": spearman})
    table = pd.DataFrame(rows)
    table["perturbation"] = pd.Categorical(table.perturbation, list(perturbations), ordered=True)
    net = table.insertion_auc - table.deletion_auc
    order = table.assign(net=net).sort_values(["perturbation", "net"], ascending=[True, False])
    return table.loc[order.index].set_index("method").round(4)
