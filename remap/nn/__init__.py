"""The deep-REMAP network: custom layers, losses and the model builder.

Importing this package imports TensorFlow/Keras; `remap` itself does not.
"""

from .layers import L2Normalize, ResidualModule, TemperatureScaling
from .losses import MaskedFocalLoss, TripletLoss
from .model import (NetworkConfig, build_model, compile_model, expand_targets, head_names,
                    module_layers)

__all__ = ["TemperatureScaling", "L2Normalize", "ResidualModule", "MaskedFocalLoss",
           "TripletLoss", "NetworkConfig", "build_model", "compile_model", "expand_targets",
           "head_names", "module_layers"]
