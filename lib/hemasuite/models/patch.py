"""A small CNN for native-resolution tiles (P3's patch variant), trained from scratch."""

from __future__ import annotations

import keras
from keras import layers

from .custom import conv_block, stem


def patch_cnn(input_shape, n_classes: int, filters=(32, 64, 128, 256), dropout: float = 0.3,
              stem_stride: int = 1) -> keras.Model:
    """conv-BN-ReLU-maxpool blocks, global average pooling, dropout, softmax.

    Global pooling makes the prediction a statistic of local texture over the tile, which
    is what separates the lymphoma subtypes (nuclear size, chromatin, follicle pattern).
    With ``stem_stride`` > 1, a strided 3x3 conv-BN-ReLU reads the native pixels first and
    the blocks work at the reduced resolution (far cheaper on a CPU).
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if stem_stride > 1:
        x = stem(x, filters[0], stem_stride)
    for width in filters:
        x = conv_block(x, width, batch_norm=True)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="patch_cnn")
