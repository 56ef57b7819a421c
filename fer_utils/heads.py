"""The emotion classifier every model ends with, built in one place and found again by it."""

from __future__ import annotations

import keras
from keras import layers

from fer_utils.config import EMOTIONS

HEAD = "emotion"  # the name of every model's final softmax layer


def emotion_head(x: keras.KerasTensor) -> keras.KerasTensor:
    """Softmax over the 7 emotions, in float32 whatever the compute policy."""
    return layers.Dense(len(EMOTIONS), activation="softmax", dtype="float32", name=HEAD)(x)


def encoder(model: keras.Model) -> keras.Model:
    """The part of a classifier below its :func:`emotion_head`: faces in, features out (taken
    before the dropout that precedes the head, if there is one)."""
    index = [layer.name for layer in model.layers].index(HEAD) - 1
    if isinstance(model.layers[index], layers.Dropout):
        index -= 1
    return keras.Model(model.inputs, model.layers[index].output, name=f"{model.name}_encoder")
