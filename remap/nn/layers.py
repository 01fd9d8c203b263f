"""Custom Keras layers of the deep-REMAP network.

Every layer is registered with ``keras.saving.register_keras_serializable(
package="remap")`` and has a complete ``get_config``, so models containing
them save to and load from ``.keras`` files with ``safe_mode=True``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from .._util.validators import check_int, check_real, is_real

__all__ = ["TemperatureScaling", "L2Normalize", "ResidualModule"]


def _inverse_softplus(y):
    # softplus(x) = log(1 + e^x)  ->  x = log(e^y - 1) = y + log(1 - e^-y)
    return y + math.log(-math.expm1(-y))


@keras.saving.register_keras_serializable(package="remap")
class TemperatureScaling(keras.layers.Layer):
    """Divide logits by a learnable temperature ``T > 0`` (Guo et al. 2017; Gilda 2025 §4.5).

    ``T = minimum + softplus(w)`` with a scalar weight ``w``, so ``T`` stays
    above ``minimum`` whatever value the optimizer gives ``w`` (and the
    gradient never vanishes as it would for a clipped ``T``).

    Parameters
    ----------
    initial : float
        Initial temperature, > ``minimum`` (default 1: logits unchanged).
    minimum : float
        Lower bound of ``T``, > 0 (default 1e-3).
    """

    def __init__(self, initial=1.0, minimum=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.minimum = check_real("minimum", minimum, 0, strict_min=True)
        if not (is_real(initial) and initial > minimum):
            raise ValueError(f"initial must be a finite number > minimum={minimum}; "
                             f"received initial={initial!r}")
        self.initial = float(initial)

    def build(self, input_shape):
        self.raw_temperature = self.add_weight(
            name="raw_temperature", shape=(),
            initializer=keras.initializers.Constant(_inverse_softplus(self.initial - self.minimum)),
            trainable=True)

    @property
    def temperature(self):
        """The current temperature ``T`` (a backend scalar tensor)."""
        return self.minimum + ops.softplus(self.raw_temperature)

    def call(self, logits):
        t = ops.cast(self.temperature, logits.dtype)
        return logits / t

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial": self.initial, "minimum": self.minimum}


@keras.saving.register_keras_serializable(package="remap")
class L2Normalize(keras.layers.Layer):
    """Scale vectors to unit Euclidean length along ``axis`` (embeddings for the triplet loss).

    Parameters
    ----------
    axis : int
    epsilon : float
        Floor of the squared norm, so that a zero vector stays finite.
    """

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.axis = check_int("axis", axis)
        self.epsilon = check_real("epsilon", epsilon, 0, strict_min=True)

    def call(self, inputs):
        sq = ops.sum(ops.square(inputs), axis=self.axis, keepdims=True)
        return inputs * ops.rsqrt(ops.maximum(sq, self.epsilon))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="remap")
class ResidualModule(keras.layers.Layer):
    """One 1-D residual module of the deep-REMAP body (Gilda 2025, Fig. 1).

    Main path: Conv1D(strides) → BatchNorm → Mish → Dropout → Conv1D → BatchNorm;
    the skip is added and a Mish follows.  An *identity* module (RN-Module V1)
    adds its input unchanged; a *projection* module (V2, downsampling) puts a
    strided 1×1 Conv1D + BatchNorm on the skip.

    Parameters
    ----------
    filters : int
    kernel_size : int
    strides : int
    dropout : float
        Dropout rate between the two convolutions, in [0, 1).
    projection : bool or None
        None (default): project when ``strides > 1`` or the number of channels
        changes, which is required then; True forces a projection; False
        forbids it (an error if one is needed).
    seed : int or None
        Seed of the dropout.
    momentum : float
        Momentum of the batch-norm moving statistics, in [0, 1).
    """

    def __init__(self, filters, kernel_size=3, strides=1, dropout=0.0, projection=None,
                 seed=None, momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        for key, value in (("filters", filters), ("kernel_size", kernel_size),
                           ("strides", strides)):
            check_int(key, value, 1)
        check_real("dropout", dropout, 0, 1, strict_max=True)
        check_real("momentum", momentum, 0, 1, strict_max=True)
        if projection not in (None, True, False):
            raise ValueError(f"projection must be None, True or False; "
                             f"received projection={projection!r}")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.dropout = float(dropout)
        self.projection = projection
        self.seed = seed
        self.momentum = float(momentum)
        conv = dict(padding="same", use_bias=False, kernel_initializer="he_normal")
        self.conv1 = keras.layers.Conv1D(self.filters, self.kernel_size, strides=self.strides,
                                         name="conv1", **conv)
        self.bn1 = keras.layers.BatchNormalization(momentum=self.momentum, name="bn1")
        self.drop = keras.layers.Dropout(self.dropout, seed=seed, name="dropout")
        self.conv2 = keras.layers.Conv1D(self.filters, self.kernel_size, name="conv2", **conv)
        self.bn2 = keras.layers.BatchNormalization(momentum=self.momentum, name="bn2")
        self.proj_conv = None
        self.proj_bn = None

    def _needs_projection(self, channels):
        return self.strides > 1 or channels != self.filters

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"ResidualModule expects inputs of shape (batch, steps, channels); "
                             f"received input_shape={input_shape}")
        channels = input_shape[-1]
        need = self._needs_projection(channels)
        if self.projection is False and need:
            raise ValueError(f"module {self.name!r}: strides={self.strides} and "
                             f"{channels} -> {self.filters} channels need a projection, "
                             f"but projection=False")
        use = need if self.projection is None else self.projection
        self.conv1.build(input_shape)
        mid = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(mid)
        self.conv2.build(mid)
        self.bn2.build(mid)
        if use:
            self.proj_conv = keras.layers.Conv1D(self.filters, 1, strides=self.strides,
                                                 padding="same", use_bias=False,
                                                 kernel_initializer="he_normal", name="proj_conv")
            self.proj_conv.build(input_shape)
            self.proj_bn = keras.layers.BatchNormalization(momentum=self.momentum,
                                                           name="proj_bn")
            self.proj_bn.build(mid)

    @property
    def is_projection(self):
        """Whether the skip path has a 1×1 projection (known once built)."""
        return self.proj_conv is not None

    def call(self, inputs, training=False):
        x = self.conv1(inputs)
        x = self.bn1(x, training=training)
        x = keras.activations.mish(x)
        x = self.drop(x, training=training)
        x = self.conv2(x)
        x = self.bn2(x, training=training)
        skip = inputs
        if self.proj_conv is not None:
            skip = self.proj_bn(self.proj_conv(inputs), training=training)
        return keras.activations.mish(x + skip)

    def compute_output_shape(self, input_shape):
        return self.conv1.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "dropout": self.dropout, "projection": self.projection, "seed": self.seed,
                "momentum": self.momentum}
