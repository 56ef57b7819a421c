"""Explanations of a face classifier: one interface for every attribution method, faithfulness
metrics (deletion / insertion AUC, the model-randomisation check) and facial-region shares.

Every method returns maps of shape (N, 48, 48): float32, non-negative, each scaled to a maximum
of 1 (an all-zero map stays zero), for the requested classes (default: the predicted ones).
Grad-CAM, Grad-CAM++, Score-CAM, saliency and SmoothGrad come from tf-keras-vis 0.8.7, which
works under Keras 3 (each checked against a hand-written GradientTape version); Integrated
Gradients and occlusion are written here with TensorFlow / NumPy, as no library offers them for
Keras 3; the LIME variants use the ``lime`` package. Models are explained in float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from unittest import mock

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

from fer_utils.config import EMOTIONS, IMAGE_SIZE

METHODS = (
    "gradcam",
    "gradcam++",
    "scorecam",
    "saliency",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
    "lime_felzenszwalb",
    "lime_slic",
    "lime_quickshift",
)
CAM_METHODS = ("gradcam", "gradcam++", "scorecam")  # the methods that take a conv ``layer``

GREY = 128.0  # what occlusion and LIME put in place of a hidden region
BLUR_SIGMA = 5.0  # px; insertion starts from the face blurred this much (as RISE)

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


def float32_copy(model: keras.Model) -> keras.Model:
    """``model`` rebuilt in float32 with the same weights (``model`` itself if already float32),
    so that gradients and maps are not computed in bfloat16."""
    config = model.get_config()
    float32 = _float32_config(config)
    if float32 == config:
        return model
    copy = model.__class__.from_config(float32)
    copy.set_weights(model.get_weights())
    return copy


def as_batch(faces: np.ndarray) -> np.ndarray:
    """Faces (N, 48, 48) or (N, 48, 48, 1), 0–255, as the models' float32 (N, 48, 48, 1)."""
    faces = np.asarray(faces, dtype=np.float32)
    return faces[..., None] if faces.ndim == 3 else faces


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


def last_conv_layer(model: keras.Model) -> str:
    """Name of the model's last ``Conv2D`` layer."""
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    if not convs:
        raise ValueError(f"{model.name} has no Conv2D layer")
    return convs[-1]


def normalise(maps: np.ndarray) -> np.ndarray:
    """Maps made finite and non-negative, each divided by its maximum (all-zero stays zero)."""
    maps = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32)), 0, None)
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence tf-keras-vis under Keras 3: its input-structure warnings and progress bars."""
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The structure of `inputs`")
            yield
    finally:
        if interactive:
            keras.config.enable_interactive_logging()


def _tf_keras_vis(visualiser: type, model, faces, classes, **call_options) -> np.ndarray:
    """Run a tf-keras-vis visualiser on a copy of ``model`` with a linear (logit) output."""
    # Score-CAM too: tf-keras-vis 0.8 applies its own softmax to the outputs, so a linear output
    # makes its channel weights the class probabilities (the paper's), not a softmax of them.
    explainer = visualiser(model, model_modifier=ReplaceToLinear(), clone=True)
    with _quiet():
        return explainer(CategoricalScore(classes.tolist()), faces, **call_options)


def _cam(
    visualiser: type, model, faces, classes, layer: str | None = None, **options
) -> np.ndarray:
    """Grad-CAM-like maps of conv ``layer`` (default: the last), upsampled to the input."""
    layer = layer or last_conv_layer(model)
    return _tf_keras_vis(
        visualiser,
        model,
        faces,
        classes,
        penultimate_layer=layer,
        seek_penultimate_conv_layer=False,
        normalize_cam=False,
        **options,
    )


def _gradcam(model, faces, classes, layer=None) -> np.ndarray:
    return _cam(Gradcam, model, faces, classes, layer)


def _gradcam_plus_plus(model, faces, classes, layer=None) -> np.ndarray:
    return _cam(GradcamPlusPlus, model, faces, classes, layer)


def _scorecam(model, faces, classes, layer=None, channels: int = -1) -> np.ndarray:
    """Score-CAM; ``channels`` > 0 keeps only that many highest-variance channels (Faster)."""
    return _cam(Scorecam, model, faces, classes, layer, max_N=channels)


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


def _lime(model, faces, classes, method: str, num_samples: int = 500, seed: int = 0) -> np.ndarray:
    """LIME (Ribeiro et al. 2016) over superpixels: the positive weights of the class's local
    linear model painted onto their segments. Hidden segments turn grey, as in occlusion (LIME's
    default, each segment's own mean, hides nothing of a uniform bright region). LIME wants RGB:
    it gets the grey face repeated to 3 channels in 0–1, and the classifier turns its samples
    back into (N, 48, 48, 1) 0–255."""
    algorithm, params = SEGMENTATIONS[method]
    segmenter = SegmentationAlgorithm(algorithm, random_seed=seed, **params)
    explainer = lime_image.LimeImageExplainer(random_state=seed)

    def classify(images: np.ndarray) -> np.ndarray:
        return probabilities(model, images[..., :1] * 255)

    maps = []
    # lime 0.2 always shows a tqdm bar per face and has no switch for it: replace its tqdm.
    with mock.patch.object(lime_image, "tqdm", lambda rows: rows):
        for face, cls in zip(faces, classes, strict=True):
            explanation = explainer.explain_instance(
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
            weights = np.zeros(explanation.segments.max() + 1)
            for segment, weight in explanation.local_exp[int(cls)]:
                weights[segment] = weight
            maps.append(weights[explanation.segments])
    return np.stack(maps)


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


def explain(
    model: keras.Model,
    faces: np.ndarray,
    method: str,
    classes: np.ndarray | None = None,
    layer: str | None = None,
    **options,
) -> np.ndarray:
    """Maps (N, 48, 48) of ``method`` (one of :data:`METHODS`) for ``classes`` (one per face or
    one for all; default: the predicted ones). ``layer`` names the conv layer of the CAM methods
    (default: the last Conv2D); ``options`` go to the method (e.g. ``steps``, ``num_samples``)."""
    if method not in EXPLAINERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if layer is not None:
        if method not in CAM_METHODS:
            raise ValueError(f"{method} takes no layer; only {', '.join(CAM_METHODS)} do")
        options["layer"] = layer
    model, faces = float32_copy(model), as_batch(faces)
    if classes is None:
        classes = predicted_classes(model, faces)
    classes = np.broadcast_to(np.asarray(classes, dtype=int), (len(faces),))
    return normalise(EXPLAINERS[method](model, faces, classes, **options))


def random_maps(n: int, seed: int = 0) -> np.ndarray:
    """Uniform random maps (n, 48, 48): the baseline every method should beat."""
    return np.random.default_rng(seed).random((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)


def blurred(faces: np.ndarray) -> np.ndarray:
    """Faces (N, 48, 48, 1) with each one Gaussian-blurred by :data:`BLUR_SIGMA` pixels."""
    return gaussian_filter(as_batch(faces), sigma=(0, BLUR_SIGMA, BLUR_SIGMA, 0))


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
    model: keras.Model, faces: np.ndarray, maps: np.ndarray, classes: np.ndarray, steps: int = 16
) -> np.ndarray:
    """Deletion AUC per face (Petsiuk et al. 2018), lower is more faithful: the most important
    pixels are deleted first, i.e. set to zero (black) as in RISE. (Deleting to the blurred face
    would leave a blurred copy of the evidence behind, which a model can still read.)"""
    faces = as_batch(faces)
    model = float32_copy(model)
    return _perturbation_auc(model, faces, np.zeros_like(faces), maps, np.asarray(classes), steps)


def insertion_auc(
    model: keras.Model, faces: np.ndarray, maps: np.ndarray, classes: np.ndarray, steps: int = 16
) -> np.ndarray:
    """Insertion AUC per face (ibid.), higher is more faithful: starting from the face blurred
    by :data:`BLUR_SIGMA` pixels, the original pixels are put back most important first."""
    faces = as_batch(faces)
    model = float32_copy(model)
    return _perturbation_auc(model, blurred(faces), faces, maps, np.asarray(classes), steps)


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


def region_shares(maps: np.ndarray) -> pd.DataFrame:
    """Share of each map's total mass in each facial region and in the rest ("other"); a row
    sums to 1 (NaN for an all-zero map)."""
    maps = np.asarray(maps, dtype=np.float64)
    totals = maps.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {name: maps[:, mask].sum(axis=1) / totals for name, mask in region_masks().items()}
    shares["other"] = 1 - sum(shares.values())
    return pd.DataFrame(shares)


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


def faithfulness_table(
    model: keras.Model,
    faces: np.ndarray,
    methods: tuple[str, ...] = METHODS,
    lime_samples: int = 500,
    randomisation_faces: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Per method (and a random map): mean deletion and insertion AUC with 95 % bootstrap
    intervals, and the mean rank correlation of the randomisation check (on the first
    ``randomisation_faces`` faces); sorted by insertion minus deletion, best first."""
    from fer_utils.evaluation import bootstrap_mean_ci

    model, faces = float32_copy(model), as_batch(faces)
    classes = predicted_classes(model, faces)
    maps = explain_all(model, faces, methods, classes, lime_samples)
    maps["random"] = random_maps(len(faces), seed)
    rows = []
    for name, found in maps.items():
        deletion = deletion_auc(model, faces, found, classes)
        insertion = insertion_auc(model, faces, found, classes)
        row = {"method": name, "deletion_auc": deletion.mean(), "insertion_auc": insertion.mean()}
        row["deletion_ci"] = "–".join(f"{v:.3f}" for v in bootstrap_mean_ci(deletion, seed=seed))
        row["insertion_ci"] = "–".join(f"{v:.3f}" for v in bootstrap_mean_ci(insertion, seed=seed))
        if name != "random":
            check = randomisation_check(
                model, faces[:randomisation_faces], name, seed, **_options(name, lime_samples)
            )
            row["randomisation_spearman"] = np.nanmean(check)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    order = (table.insertion_auc - table.deletion_auc).sort_values(ascending=False).index
    return table.loc[order].round(4)
