"""Crop geometry of the prediction path, measured on FER2013 itself.

    python benchmarks/bench_framing.py [--fit] [--n 800] [--seed 0] [--detectors haar mtcnn]
                                       [--data FER2013] [--model models/default.keras]

Without ``--fit`` (the check, on PrivateTest): for each detector, FER2013 PrivateTest faces
are enlarged and placed in larger frames (:func:`fer_utils.inference.framing.reframe`),
detected, cropped and classified with the default model. Printed: the detection rate, the
accuracy of classifying the 48×48 faces directly (the detected ones), and the accuracy of
detect → crop → classify with the old crop (the box's square widened by 15 % a side), the box
itself, the shipped geometry (``faces.CROP_GEOMETRY``) and, as the ceiling, the square where
the face was put (what enlarging and shrinking back alone costs), each with the paired bootstrap
interval of its difference from direct, and of the shipped geometry against the old crop.

With ``--fit`` (on PublicTest): the geometry of each detector by box inversion
(:func:`fer_utils.inference.framing.box_geometry`), the same inversion on reframed faces for
comparison, the reframed accuracy of the fitted geometry, and the ``CROP_GEOMETRY`` lines to
paste into ``fer_utils/inference/faces.py``.
"""

from __future__ import annotations

import argparse
import time

from fer_utils.data import load_fer2013
from fer_utils.errors import run_script
from fer_utils.evaluation import bootstrap_gain_ci
from fer_utils.inference import load_classifier, make_detector
from fer_utils.inference.faces import CROP_GEOMETRY, Geometry
from fer_utils.inference.framing import (
    BoxFit,
    Reframed,
    box_geometry,
    reframed_accuracy,
    sample_faces,
)

OLD = Geometry.centred(0.15)  # the crop before it was measured: predict's --margin 0.15
OLD_NAME = "old: square +15 % a side"


def describe(fit: BoxFit) -> str:
    g, (q1, q3) = fit.geometry, fit.scale_quartiles
    return (
        f"scale {g.scale:.3f} (quartiles {q1:.3f}–{q3:.3f}), dx {g.dx:+.3f}, dy {g.dy:+.3f}, "
        f"box w/h {fit.aspect:.2f}; detected {fit.rate:.1%} of {fit.n}"
    )


def report(result: Reframed, seed: int, against: tuple[str, str] | None = None) -> None:
    """Accuracies on the detected faces, each crop's paired interval against direct, and
    ``against`` = (new, old): the paired interval of new − old."""
    d = result.detected
    labels, direct = result.labels[d], result.direct[d]
    print(f"  detected {result.rate:.1%} of {len(d)} faces; on those {d.sum()}:")
    print(f"  {'direct (48×48 face)':<34} {result.accuracy():.1%}")
    for name, predicted in result.cropped.items():
        low, high = bootstrap_gain_ci(labels, predicted[d], direct, seed=seed)
        gain = result.accuracy(name) - result.accuracy()
        print(
            f"  {name:<34} {result.accuracy(name):.1%}   − direct {100 * gain:+.1f} points "
            f"[{100 * low:+.1f}, {100 * high:+.1f}]"
        )
    if against:
        new, old = against
        low, high = bootstrap_gain_ci(
            labels, result.cropped[new][d], result.cropped[old][d], seed=seed
        )
        gain = result.accuracy(new) - result.accuracy(old)
        print(
            f"  {new} − {old}: {100 * gain:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}] "
            "(paired bootstrap, 95 %)"
        )
    print(f"  boxes inverted in the reframed faces: {describe(BoxFit.of(result.inverted, len(d)))}")


def fit(args: argparse.Namespace, classifier) -> None:
    faces, labels = sample_faces(load_fer2013(args.data), "PublicTest", args.n, args.seed)
    fitted = {}
    for name in args.detectors:
        start = time.perf_counter()
        detect = make_detector(name)
        box = box_geometry(faces, detect, args.seed)
        g = box.geometry
        fitted[name] = Geometry(round(g.scale, 3), round(g.dx, 3), round(g.dy, 3))
        print(f"\n{name}, PublicTest, box inversion: {describe(box)}")
        geometries = {OLD_NAME: OLD, f"fitted {name}": fitted[name]}
        result = reframed_accuracy(faces, labels, classifier, detect, geometries, args.seed)
        print(f"{name}, PublicTest, reframed:")
        report(result, args.seed)
        print(f"  ({time.perf_counter() - start:.0f} s)")
    print("\n# CROP_GEOMETRY in fer_utils/inference/faces.py:")
    for name, g in fitted.items():
        print(f'    "{name}": Geometry(scale={g.scale}, dx={g.dx}, dy={g.dy}),')


def check(args: argparse.Namespace, classifier) -> None:
    faces, labels = sample_faces(load_fer2013(args.data), "PrivateTest", args.n, args.seed)
    for name in args.detectors:
        start = time.perf_counter()
        shipped = f"shipped {name}"
        geometries = {OLD_NAME: OLD, "the box's square": Geometry(), shipped: CROP_GEOMETRY[name]}
        detect = make_detector(name)
        result = reframed_accuracy(faces, labels, classifier, detect, geometries, args.seed)
        print(
            f"\n{name}, PrivateTest, reframed (seed {args.seed}), {shipped}: {CROP_GEOMETRY[name]}"
        )
        report(result, args.seed, against=(shipped, OLD_NAME))
        print(f"  ({time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help="measure the geometry on PublicTest")
    parser.add_argument("--n", type=int, default=800, help="faces (random, of the split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--detectors", nargs="+", default=["haar", "mtcnn"], choices=["haar", "mtcnn"]
    )
    parser.add_argument("--data", help="FER2013 (default: $FER2013_PATH, else data/)")
    parser.add_argument("--model", help="default: models/default.keras")
    args = parser.parse_args()
    classifier = load_classifier(args.model)
    (fit if args.fit else check)(args, classifier)


if __name__ == "__main__":
    run_script(main)
