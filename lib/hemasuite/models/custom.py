"""The papers' own from-scratch CNNs, built with the Keras 3 API."""

from __future__ import annotations

import keras
from keras import layers

from ..errors import ParameterError


def conv_block(x, filters: int, kernel: int = 3, batch_norm: bool = False, bn_momentum: float = 0.9,
               convs: int = 1):
    """``convs`` x (Conv2D [+ BatchNorm] + ReLU), then 2x2 max-pooling."""
    for _ in range(convs):
        x = layers.Conv2D(filters, kernel, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=bn_momentum)(x)
        x = layers.ReLU()(x)
    return layers.MaxPooling2D()(x)


def stem(x, filters: int, stride: int, batch_norm: bool = True, bn_momentum: float = 0.9, kernel: int = 3):
    """Strided Conv2D [+ BatchNorm] + ReLU: reads the full-resolution pixels, then hands on a smaller map.

    ``kernel`` should be at least ``stride``, or some pixels are never read; ``kernel`` =
    ``stride`` cuts the image into non-overlapping patches (a "patchify" stem).
    """
    if kernel < stride:
        raise ParameterError(f"stem kernel {kernel} is smaller than its stride {stride}: some pixels would be skipped")
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=not batch_norm, name="stem")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=bn_momentum)(x)
    return layers.ReLU()(x)


def classifier_head(x, n_classes: int, units: int, dropout: float):
    """Flatten/pool -> Dense(units, ReLU) -> Dropout -> softmax (kept in float32 for mixed precision)."""
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)


def p4_sequential_cnn(input_shape, n_classes: int, filters=(32, 64, 128), dense_units: int = 128,
                      dropout: float = 0.5, bn_momentum: float = 0.9) -> keras.Model:
    """P4 (Nadim et al.): Keras Sequential CNN, softmax output.

    Each block is Conv2D -> BatchNormalization -> ReLU -> MaxPooling2D, the layer order of
    the paper's CNN section ("the Normalization layer, which sits between the
    Convolutional layer and the ReLU activation function"), then dropout, dense and
    softmax. The paper gives no layer sizes; three blocks of 32/64/128 3x3 filters, as in
    the Keras image-classification examples it follows, is this suite's reading.
    """
    model = keras.Sequential(name="p4_sequential_cnn")
    model.add(keras.Input(shape=input_shape))
    for width in filters:
        model.add(layers.Conv2D(width, 3, padding="same", use_bias=False))
        model.add(layers.BatchNormalization(momentum=bn_momentum))
        model.add(layers.ReLU())
        model.add(layers.MaxPooling2D())
    model.add(layers.Flatten())
    model.add(layers.Dropout(dropout))
    model.add(layers.Dense(dense_units, activation="relu"))
    model.add(layers.Dropout(dropout))
    model.add(layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions"))
    return model


def p1_deep_cnn(input_shape, n_classes: int, filters=(32, 64, 128, 256), dense_units: int = 256,
                dropout: float = 0.4, batch_norm: bool = True, bn_momentum: float = 0.9,
                stem_stride: int = 1, stem_kernel: int = 3) -> keras.Model:
    """P1 (Kadhim et al.): a deep CNN of conv + ReLU + max-pool blocks, fully connected, softmax.

    P1 names no depth or widths. Four blocks with batch normalization (momentum 0.9, so
    its moving statistics settle within a short run) and global average pooling. With
    ``stem_stride`` > 1 a strided ``stem_kernel`` x ``stem_kernel`` convolution
    (``filters[0]`` wide, BN, ReLU) comes first: the network sees a larger input for about
    the cost of a ``stem_stride`` times smaller one.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    if stem_stride > 1:
        x = stem(x, filters[0], stem_stride, batch_norm, bn_momentum, stem_kernel)
    for width in filters:
        x = conv_block(x, width, batch_norm=batch_norm, bn_momentum=bn_momentum)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, classifier_head(x, n_classes, dense_units, dropout), name="p1_deep_cnn")


def p2_traditional_cnn(input_shape, n_classes: int, batch_norm: bool = True) -> keras.Model:
    """P2's 'traditional CNN': three conv + max-pool blocks, dense, dropout, softmax.

    P2 gives no layer details. With SGD (lr 0.01, momentum 0.9) and no normalisation the
    network stayed at the majority class on the stand-in task, so the blocks have batch
    normalisation (momentum 0.9) between convolution and ReLU, as P4's and this suite's
    AlexNet do.
    """
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for width in (32, 64, 128):
        x = conv_block(x, width, batch_norm=batch_norm)
    x = layers.Flatten()(x)
    return keras.Model(inputs, classifier_head(x, n_classes, 256, 0.5), name="p2_traditional_cnn")


def p5_small_cnn(input_shape, n_classes: int) -> keras.Model:
    """P5's small CNN: conv 24 filters 9x9, conv 48 filters 7x7 (ReLU, max-pool), fully connected."""
    inputs = keras.Input(shape=input_shape)
    x = conv_block(inputs, 24, kernel=9)
    x = conv_block(x, 48, kernel=7)
    x = layers.Flatten()(x)
    return keras.Model(inputs, classifier_head(x, n_classes, 128, 0.5), name="p5_small_cnn")


def alexnet(input_shape, n_classes: int, dropout: float = 0.5, fc_units: int = 4096,
            bn_momentum: float = 0.9) -> keras.Model:
    """AlexNet (Krizhevsky et al. 2012), single-tower, BN in place of local response norm.

    Keras ships no AlexNet (the ImageNet one is torchvision's: :mod:`.torchvision_alexnet`);
    ``fc_units`` shrinks FC6/FC7 for CPU runs. FC6 is named
    ``fc6`` so that features can be read from it (P5). Batch-normalisation momentum is
    0.9: with Keras' default 0.99 the moving statistics lag far behind the weights in a
    short run, and validation accuracy collapses to one class.
    """
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(96, 11, strides=4, padding="same", activation="relu")(inputs)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(256, 5, padding="same", activation="relu")(x)
    x = layers.BatchNormalization(momentum=bn_momentum)(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(256, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(fc_units, activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(fc_units, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="alexnet")
