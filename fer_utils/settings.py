"""The settings of a run: :class:`TrainConfig` (supervised training) and
:class:`PretrainConfig` (SimCLR), each field with its help text and, where the command line
has spelled it differently since the first recorded runs, its flag. The command line is built
from these fields (:func:`fer_utils.cli.add_config_arguments`) and every value is checked here,
when a config is made: a bad setting is a :class:`~fer_utils.errors.UsageError` before any data
is loaded. Light on purpose (no TensorFlow or Keras), so the command line starts quickly."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_utils.config import AUGMENTATIONS, POLICIES
from fer_utils.errors import UsageError, require, require_choice
from fer_utils.preprocessing import CORRECTIONS

LOSSES = ("ce", "focal")
OPTIMIZERS = ("adamw", "sgd")  # sgd: Nesterov momentum 0.9
SCHEDULES = ("cosine", "plateau")  # cosine: one warm-up epoch; plateau: ReduceLROnPlateau
SOFT_TARGETS = ("none", "ferplus", "teacher")
JIT = {"auto": "auto", "on": True, "off": False}  # command-line words for jit_compile


def option(default: Any, help: str, flag: str | None = None, **metadata: Any) -> Any:
    """A config field with its ``help`` text; ``flag`` where the option is not ``--<name>``;
    ``choices`` / ``parse`` (text → value) for the command line. A dict default is copied per
    instance."""
    meta = {"help": help, "flag": flag, **metadata}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


def check_budget(
    epochs: int, batch_size: int, learning_rate: float, time_budget_minutes: float | None
) -> None:
    """The settings every training run shares (supervised or SimCLR)."""
    require(epochs >= 1, "epochs", epochs, "at least 1")
    require(batch_size >= 1, "batch_size", batch_size, "at least 1")
    require(learning_rate > 0, "learning_rate", learning_rate, "above 0")
    require(time_budget_minutes is None or time_budget_minutes > 0, "time_budget_minutes",
            time_budget_minutes, "above 0 minutes")  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in its results JSON)."""

    model: str = option(
        None,
        "registry architecture (required): baseline, five_layer, fast_cnn, vgg, resnet_lite, "
        "transfer",
    )
    model_kwargs: dict = option({}, "the architecture's options as JSON, e.g. '{\"width\": 0.5}'")
    epochs: int = option(40, "epochs", shown="the profile's")
    batch_size: int = option(256, "faces per batch and replica", shown="the profile's")
    optimizer: str = option("adamw", "adamw, or sgd with Nesterov momentum", choices=OPTIMIZERS)
    learning_rate: float = option(2e-3, "peak learning rate (× the replicas)", flag="--lr")
    weight_decay: float = option(1e-4, "decoupled weight decay")
    schedule: str = option("cosine", "cosine (one warm-up epoch) or plateau", choices=SCHEDULES)
    plateau_factor: float = option(0.5, "plateau: the learning rate times this after ...")
    plateau_patience: int = option(3, "... this many epochs without a better PublicTest")
    loss: str = option("ce", "cross-entropy or focal loss", choices=LOSSES)
    focal_gamma: float = option(2.0, "focal loss: the focusing exponent")
    class_weighting: bool = option(False, "balanced class weights / α", flag="--class-weights")
    label_smoothing: float = option(0.0, "label smoothing of the targets")
    augment: str = option("basic", "training augmentation", choices=AUGMENTATIONS)
    correction: str = option(
        "none", "illumination correction inside the model", choices=CORRECTIONS
    )
    init: str | None = option(None, "start from this .keras model's weights (e.g. pretrain's)")
    label_fraction: float = option(1.0, "train on this stratified fraction of the labels")
    soft_targets: str = option(
        "none", "one-hot labels, FER+ votes or a teacher's", choices=SOFT_TARGETS
    )
    teacher: str | None = option(None, "distil: .npz of teacher probabilities (implies teacher)")
    clean: bool = option(False, "train on cleaned Training data")
    patience: int = option(10, "early stopping patience on PublicTest, epochs")
    policy: str = option("auto", "dtype policy; auto: mixed_float16 on a GPU", choices=POLICIES)
    jit_compile: bool | str = option(
        "auto", "XLA; auto: Keras' choice (on for one GPU)", flag="--jit", choices=tuple(JIT),
        parse=JIT.get,
    )  # fmt: skip
    time_budget_minutes: float | None = option(
        None, "stop after the epoch that crosses this many minutes", flag="--time-budget"
    )
    precise_bn: bool = option(False, "recompute BatchNorm statistics before each validation")
    seed: int = option(0, "seed of the weights, the data order and the profile's subset")

    def describe(self) -> str:
        """The model as results tables name it, e.g. ``five_layer + clahe`` or
        ``fast_cnn (from simclr-fast_cnn-cpu), 10% labels``."""
        text = self.model
        if self.correction != "none":
            text += f" + {self.correction}"
        if self.augment == "lighting":
            text += " + lighting aug."
        if self.init:
            text += f" (from {Path(self.init).stem})"
        if self.label_fraction < 1:
            text += f", {self.label_fraction:.0%} labels"
        return text

    def __post_init__(self) -> None:
        require(isinstance(self.model, str) and bool(self.model), "model", self.model,
                "an architecture name (--model)")  # fmt: skip
        if self.teacher and self.soft_targets == "none":
            self.soft_targets = "teacher"  # a teacher file means distillation
        require_choice("loss", self.loss, LOSSES)
        require_choice("augment", self.augment, AUGMENTATIONS)
        require_choice("optimizer", self.optimizer, OPTIMIZERS)
        require_choice("schedule", self.schedule, SCHEDULES)
        require_choice("soft_targets", self.soft_targets, SOFT_TARGETS)
        require_choice("policy", self.policy, POLICIES)
        require_choice("jit_compile", self.jit_compile, tuple(JIT.values()))
        require_choice("correction", self.correction, CORRECTIONS)
        require(self.soft_targets != "teacher" or bool(self.teacher), "teacher", self.teacher,
                "a teacher file for soft_targets='teacher'")  # fmt: skip
        check_budget(self.epochs, self.batch_size, self.learning_rate, self.time_budget_minutes)
        require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "0 or more")
        require(self.focal_gamma >= 0, "focal_gamma", self.focal_gamma, "0 or more")
        require(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing,
                "at least 0 and below 1")  # fmt: skip
        require(0 < self.label_fraction <= 1, "label_fraction", self.label_fraction,
                "above 0 and at most 1")  # fmt: skip
        require(self.patience >= 0, "patience", self.patience, "0 or more epochs")
        require(0 < self.plateau_factor < 1, "plateau_factor", self.plateau_factor, "in (0, 1)")
        require(self.plateau_patience >= 0, "plateau_patience", self.plateau_patience, "0 or more")


@dataclass
class PretrainConfig:
    """A SimCLR pretraining run (recorded with its results)."""

    model: str = option("fast_cnn", "registry architecture to pretrain")
    model_kwargs: dict = option({}, "the architecture's options as JSON, e.g. '{\"width\": 16}'")
    epochs: int = option(32, "cosine schedule length (cpu: 32, about an hour of two cores)",
                         shown="the profile's")  # fmt: skip
    batch_size: int = option(256, "faces per batch (two views each)", shown="the profile's")
    learning_rate: float = option(2e-3, "peak learning rate", flag="--lr")
    weight_decay: float = option(1e-4, "decoupled weight decay")
    temperature: float = option(0.2, "NT-Xent temperature")
    time_budget_minutes: float | None = option(
        None, "stop after the epoch that crosses this many minutes", flag="--time-budget"
    )
    seed: int = option(0, "seed of the weights, the views and the profile's subset")

    def __post_init__(self) -> None:
        check_budget(self.epochs, self.batch_size, self.learning_rate, self.time_budget_minutes)
        require(self.temperature > 0, "temperature", self.temperature, "above 0")
        require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "0 or more")


# --- the command line's form of a config --------------------------------------------------
def json_object(text: str) -> dict:
    """An argparse type: a JSON object such as ``{"width": 0.5}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"a JSON object is needed, e.g. '{{\"width\": 0.5}}', not {text!r}"
        )
    return value


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per field of the config dataclass ``cls``: its help, choices and flag from
    the field's metadata (:func:`fer_utils.settings.option`). Every option's default is None
    ("not given"), so :func:`config_from_args` can layer the sources."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} settings (fer_utils/settings.py)")
    for f in dataclasses.fields(cls):
        meta, hint = f.metadata, hints[f.name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = meta.get("shown", default)
        text = meta["help"] + ("" if shown is None else f" ({shown})")
        options: dict = {"dest": f.name, "default": None, "help": text}
        if meta.get("choices"):
            options["choices"] = list(meta["choices"])
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif hint is dict:
            options["type"] = json_object
        elif not meta.get("parse"):
            options["type"] = next(t for t in typing.get_args(hint) or (hint,) if t is not None)
        group.add_argument(meta.get("flag") or "--" + f.name.replace("_", "-"), **options)


def config_from_args(cls: type, args: argparse.Namespace, defaults: dict):
    """A ``cls`` config from, in rising priority: its field defaults, ``defaults`` (e.g. the
    profile's epochs), ``--config FILE``, ``--set KEY=VALUE`` and the options given. Unknown
    keys and bad values are :class:`UsageError` s, raised before any data is loaded."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    values = dict(defaults)
    if args.config:
        values |= _config_file(Path(args.config), names)
    for item in args.set:
        key, _, text = item.partition("=")
        key = _known(key.strip(), names, f"--set {item}")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text  # a bare word: a string
    for name, f in names.items():
        given = getattr(args, name, None)
        if given is not None:
            values[name] = f.metadata["parse"](given) if f.metadata.get("parse") else given
    hints = typing.get_type_hints(cls)
    return cls(**{name: _typed(name, value, hints[name]) for name, value in values.items()})


_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
          dict: "a JSON object", type(None): "null"}  # fmt: skip


def _typed(name: str, value: Any, hint: Any) -> Any:
    """``value`` as setting ``name``'s type ``hint`` asks for (a whole number is a float too),
    or a :class:`UsageError` that says what it must be (``--set epochs=abc``, a string in a
    ``--config`` file, ``class_weighting=maybe``)."""
    kinds = typing.get_args(hint) or (hint,)
    for kind in kinds:
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
    wanted = " or ".join(_WORDS.get(kind, getattr(kind, "__name__", str(kind))) for kind in kinds)
    raise UsageError(f"setting {name}={value!r}: must be {wanted}")


def _known(key: str, names: dict, where: str) -> str:
    if key not in names:
        raise UsageError(f"{where}: no setting {key!r}; the settings are {', '.join(names)}")
    return key


def _config_file(path: Path, names: dict) -> dict:
    """The settings in ``path``: a JSON object of them, or a results record's ``config``."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--config {path}: cannot read it as JSON ({error})") from None
    if isinstance(values, dict) and "run_name" in values and "config" in values:
        values = values["config"]  # a record: re-run it
    if not isinstance(values, dict):
        raise UsageError(f"--config {path}: a JSON object of settings is needed")
    return {_known(key, names, f"--config {path}"): value for key, value in values.items()}
