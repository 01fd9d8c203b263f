"""The deep-REMAP network: a 1-D ResNet body with one two-part head per label.

Architecture (Gilda 2025, §4 and Fig. 1; METHOD.md "Network"):

* input ``flux`` of shape (npix,), reshaped to (npix, 1);
* stem: strided Conv1D → BatchNorm → Mish → max pooling (layers ``stem*``);
* residual modules ``module_0``, ``module_1``, … (`~remap.nn.layers.ResidualModule`):
  projection modules where the stride or the number of filters changes,
  identity modules otherwise;
* global average and global max pooling, concatenated (``pooled``);
* per head ``h`` (a `~remap.heads.HeadSpec`): an embedding sub-head
  ``Dense(embedding_size)`` → `~remap.nn.layers.L2Normalize` (output
  ``h_embedding``, trained with the triplet loss) and a classification
  sub-head ``Dense(dense_units, mish)`` → Dropout → ``Dense(n_bins)`` →
  `~remap.nn.layers.TemperatureScaling` → softmax (output ``h``, the PMF,
  trained with the focal loss).

The number of modules and filters is a `NetworkConfig`; the paper chose them
by 10-fold cross-validation (`remap.train.cv`).  The default is sized for
speed on a CPU (see `NetworkConfig`).
"""

from __future__ import annotations

import dataclasses
import re

import keras

from .._util.validators import check_int, check_real, is_int
from ..heads import resolve_heads
from .layers import L2Normalize, ResidualModule, TemperatureScaling
from .losses import MaskedFocalLoss, TripletLoss

__all__ = ["NetworkConfig", "build_model", "compile_model", "expand_targets",
           "module_layers", "head_names", "EMBEDDING_SUFFIX"]

#: Suffix of the embedding output of a head (``teff`` → ``teff_embedding``).
EMBEDDING_SUFFIX = "_embedding"

_RESERVED = ("stem", "module_", "pooled", "flux")


def _is_int(value, low):
    return is_int(value) and value >= low


@dataclasses.dataclass
class NetworkConfig:
    """Architecture of a deep-REMAP network.

    Parameters
    ----------
    stem_filters, stem_kernel, stem_strides : int
        Filters, kernel size and stride of the stem convolution.
    stem_pool : int
        Max-pooling size (= stride) after the stem convolution; 1 = none.
    modules : sequence of (filters, strides)
        One residual module per entry, from the input side.  An entry whose
        stride is > 1 or whose filters differ from its input's channels is a
        projection module; ``(filters, 1)`` with unchanged filters is an
        identity module.
    blocks_per_stage : int
        Each entry of ``modules`` is followed by ``blocks_per_stage - 1``
        identity modules with its filters (default 1: none).
    kernel_size : int
        Kernel size of the residual convolutions.
    dropout : float
        Dropout rate inside the residual modules, in [0, 1).
    embedding_size : int
        Dimension of each head's embedding.
    dense_units : int
        Units of the hidden fully connected layer of each classification head.
    head_dropout : float
        Dropout rate in the classification heads, in [0, 1).
    bn_momentum : float
        Momentum of the batch-norm moving statistics, in [0, 1).  0.9 rather
        than keras' 0.99: with 0.99 the moving statistics lag the weights for
        hundreds of steps, and a network trained on a few thousand spectra
        predicts far worse in inference mode than in training mode.

    Notes
    -----
    The defaults are sized for throughput on a CPU: spectra of ~4,300 pixels
    (a MARVELS beam) are reduced 8-fold by the stem (stride 4, pooling 2)
    before the first residual module, which keeps the costly early
    convolutions and Mish activations short (314 k parameters with the three
    built-in heads).  On the shared 2-core development CPU, inference on
    4,301-pixel spectra at batch 256 took 1.17 ms of CPU time per spectrum
    (best wall-clock rates 990–1,050 spectra/s with the machine partly
    loaded); a stem of stride 2 took 2.6 ms, and a naive ResNet-1D with
    stride-1 early convolutions (1.8 M parameters) managed 83 spectra/s.
    """

    stem_filters: int = 16
    stem_kernel: int = 7
    stem_strides: int = 4
    stem_pool: int = 2
    modules: tuple = ((32, 2), (64, 2), (128, 2))
    blocks_per_stage: int = 1
    kernel_size: int = 5
    dropout: float = 0.1
    embedding_size: int = 32
    dense_units: int = 128
    head_dropout: float = 0.2
    bn_momentum: float = 0.9

    def __post_init__(self):
        for key in ("stem_filters", "stem_kernel", "stem_strides", "stem_pool",
                    "blocks_per_stage", "kernel_size", "embedding_size", "dense_units"):
            value = getattr(self, key)
            check_int(f"NetworkConfig.{key}", value, 1)
        for key in ("dropout", "head_dropout", "bn_momentum"):
            value = getattr(self, key)
            check_real(f"NetworkConfig.{key}", value, 0, 1, strict_max=True)
        if isinstance(self.modules, (str, bytes)) or not hasattr(self.modules, "__iter__"):
            raise ValueError(f"NetworkConfig.modules must be a sequence of (filters, strides) "
                             f"pairs; received modules={self.modules!r}")
        mods = []
        for k, entry in enumerate(self.modules):
            if (isinstance(entry, (str, bytes)) or not hasattr(entry, "__len__")
                    or len(entry) != 2 or not _is_int(entry[0], 1) or not _is_int(entry[1], 1)):
                raise ValueError(f"NetworkConfig.modules[{k}] must be a pair (filters, strides) "
                                 f"of integers >= 1; received {entry!r}")
            mods.append((int(entry[0]), int(entry[1])))
        if not mods:
            raise ValueError("NetworkConfig.modules must list at least one (filters, strides) "
                             "module; received an empty sequence")
        self.modules = tuple(mods)
        self.dropout = float(self.dropout)
        self.head_dropout = float(self.head_dropout)
        self.bn_momentum = float(self.bn_momentum)

    @classmethod
    def from_dict(cls, d):
        """A config from a mapping (e.g. a TOML table); unknown keys raise `ValueError`."""
        if isinstance(d, cls):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"network config must be a mapping; received {d!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown network config keys {unknown}; valid keys are "
                             f"{sorted(known)}")
        return cls(**d)

    def to_dict(self):
        """A JSON/TOML-able dict (``modules`` as a list of ``[filters, strides]`` lists)."""
        d = dataclasses.asdict(self)
        d["modules"] = [list(m) for m in self.modules]
        return d

    def expanded_modules(self):
        """The (filters, strides) of every residual module, identity modules included."""
        out = []
        for filters, strides in self.modules:
            out.append((filters, strides))
            out += [(filters, 1)] * (self.blocks_per_stage - 1)
        return out

    def downsampling(self):
        """Total reduction factor of the spectral dimension before pooling."""
        f = self.stem_strides * self.stem_pool
        for _, s in self.expanded_modules():
            f *= s
        return f


def _resolve_heads(heads):
    out = resolve_heads(heads, what="build_model")
    for h in out:
        if any(h.name.startswith(r) for r in _RESERVED):
            raise ValueError(f"head name {h.name!r} clashes with the network's layer names: "
                             f"it may not start with any of {list(_RESERVED)}")
    names = [h.name for h in out]
    for h in names:
        if h.endswith(EMBEDDING_SUFFIX) and h[:-len(EMBEDDING_SUFFIX)] in names:
            raise ValueError(f"head name {h!r} clashes with the embedding output of head "
                             f"{h[:-len(EMBEDDING_SUFFIX)]!r}")
    return out


def build_model(config, heads, npix, *, name="remap"):
    """Build an (uncompiled) deep-REMAP network.

    Parameters
    ----------
    config : `NetworkConfig`, dict or None
        Architecture (None: the default `NetworkConfig`).
    heads : sequence of `remap.heads.HeadSpec` or str
        One head per predicted label, e.g. ``[remap.get_head(n) for n in
        remap.list_heads()]``; plugin heads are built like the built-in ones.
    npix : int
        Pixels per spectrum (the beam's model grid).
    name : str
        Model name.

    Returns
    -------
    model : `keras.Model`
        Input ``flux`` of shape (npix,) (a trailing channel axis of 1 is also
        accepted by keras); outputs a dict ``{h: pmf (n_bins,), h_embedding:
        unit vector (embedding_size,)}`` per head.
    """
    config = NetworkConfig() if config is None else NetworkConfig.from_dict(config)
    heads = _resolve_heads(heads)
    check_int("npix", npix, 2)
    if npix < config.downsampling():
        raise ValueError(f"npix={npix} is shorter than the network's total downsampling "
                         f"factor {config.downsampling()} (stem stride x pool x module strides)")
    npix = int(npix)

    inputs = keras.Input((npix,), name="flux")
    x = keras.layers.Reshape((npix, 1), name="stem_reshape")(inputs)
    x = keras.layers.Conv1D(config.stem_filters, config.stem_kernel, strides=config.stem_strides,
                            padding="same", use_bias=False, kernel_initializer="he_normal",
                            name="stem_conv")(x)
    x = keras.layers.BatchNormalization(momentum=config.bn_momentum, name="stem_bn")(x)
    x = keras.layers.Activation("mish", name="stem_act")(x)
    if config.stem_pool > 1:
        x = keras.layers.MaxPooling1D(config.stem_pool, padding="same", name="stem_pool")(x)
    for k, (filters, strides) in enumerate(config.expanded_modules()):
        x = ResidualModule(filters, kernel_size=config.kernel_size, strides=strides,
                           dropout=config.dropout, momentum=config.bn_momentum,
                           name=f"module_{k}")(x)
    pooled = keras.layers.Concatenate(name="pooled")([
        keras.layers.GlobalAveragePooling1D(name="pooled_avg")(x),
        keras.layers.GlobalMaxPooling1D(name="pooled_max")(x)])

    outputs = {}
    for h in heads:
        e = keras.layers.Dense(config.embedding_size, name=f"{h.name}_embedding_dense")(pooled)
        outputs[f"{h.name}{EMBEDDING_SUFFIX}"] = L2Normalize(name=f"{h.name}{EMBEDDING_SUFFIX}")(e)
        c = keras.layers.Dense(config.dense_units, activation="mish",
                               name=f"{h.name}_dense")(pooled)
        c = keras.layers.Dropout(config.head_dropout, name=f"{h.name}_dropout")(c)
        c = keras.layers.Dense(h.n_bins, name=f"{h.name}_logits")(c)
        c = TemperatureScaling(name=f"{h.name}_temperature")(c)
        outputs[h.name] = keras.layers.Activation("softmax", dtype="float32", name=h.name)(c)
    ordered = {}
    for h in heads:
        ordered[h.name] = outputs[h.name]
        ordered[f"{h.name}{EMBEDDING_SUFFIX}"] = outputs[f"{h.name}{EMBEDDING_SUFFIX}"]
    return keras.Model(inputs, ordered, name=name)


def head_names(model):
    """Names of the heads of a deep-REMAP model (its PMF outputs), in output order."""
    names = list(model.output_names)
    heads = [n for n in names if not (n.endswith(EMBEDDING_SUFFIX)
                                      and n[:-len(EMBEDDING_SUFFIX)] in names)]
    return heads


def expand_targets(target_dict):
    """Targets for all outputs: each head's PMF also under ``{head}_embedding``.

    Works on numpy arrays and inside `tf.data.Dataset.map`, e.g.
    ``ds.map(lambda x, y: (x, expand_targets(y)))``.
    """
    if not isinstance(target_dict, dict):
        raise TypeError(f"expand_targets needs a dict head -> PMF; received {type(target_dict)}")
    out = dict(target_dict)
    for key, value in target_dict.items():
        if not key.endswith(EMBEDDING_SUFFIX):
            out.setdefault(f"{key}{EMBEDDING_SUFFIX}", value)
    return out


def compile_model(model, heads, *, optimizer, triplet_weight=0.001, use_triplet=True,
                  gamma=2.0, margin=0.2, alpha=0.25, mining="batch_hard", jit_compile=False,
                  **compile_kwargs):
    """Compile a deep-REMAP model with L = Σ_p (focal_p + λ triplet_p) (Gilda 2025, Eq. 7).

    Parameters
    ----------
    model : `keras.Model`
        From `build_model`.
    heads : sequence of `remap.heads.HeadSpec` or str
        The model's heads (all of them; `ValueError` otherwise).
    optimizer : `keras.optimizers.Optimizer` or str
    triplet_weight : float
        λ, the weight of each triplet loss (0.001 in the paper).
    use_triplet : bool
        False gives the triplet losses weight 0 (the "no triplet" ablation):
        they are still computed and logged, but do not train the network.
    gamma, alpha : float
        Focal-loss parameters (`~remap.nn.losses.MaskedFocalLoss`).
    margin : float
        Triplet margin.
    mining : str
        Triplet mining (`~remap.nn.losses.TripletLoss`).
    jit_compile : bool or "auto"
        XLA compilation of the train step.  Off by default: keras' "auto"
        turns XLA on with TensorFlow, and on a 2-core CPU compiling the
        default network took minutes and trained slower (12 against 263
        spectra/s at batch 64 in our measurement).
    **compile_kwargs
        Passed to `keras.Model.compile` (e.g. ``metrics``).

    Returns
    -------
    model : `keras.Model`
        The same model, compiled.  Train it on ``(flux, expand_targets(pmfs))``.
    """
    heads = _resolve_heads(heads)
    check_real("triplet_weight", triplet_weight, 0)
    model_heads = head_names(model)
    names = [h.name for h in heads]
    if sorted(names) != sorted(model_heads):
        raise ValueError(f"compile_model needs exactly the heads of model {model.name!r}, "
                         f"{sorted(model_heads)}; received {sorted(names)} (build a model with "
                         f"only the heads to train)")
    outputs = set(model.output_names)
    losses, weights = {}, {}
    for h in heads:
        emb = f"{h.name}{EMBEDDING_SUFFIX}"
        if emb not in outputs:
            raise ValueError(f"model {model.name!r} has no output {emb!r}; "
                             f"its outputs are {sorted(outputs)}")
        losses[h.name] = MaskedFocalLoss(gamma=gamma, alpha=alpha, name=f"{h.name}_focal")
        weights[h.name] = 1.0
        # Without the triplet term the loss stays attached with weight 0: the embedding
        # layers then get zero gradients (no update, no "missing gradient" warning) and the
        # triplet loss is still logged for comparison.
        losses[emb] = TripletLoss(margin=margin, n_bins=h.n_bins, mining=mining,
                                  name=f"{h.name}_triplet")
        weights[emb] = float(triplet_weight) if use_triplet else 0.0
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                  jit_compile=jit_compile, **compile_kwargs)
    return model


_MODULE_RE = re.compile(r"^module_(\d+)$")


def module_layers(model):
    """Layers grouped for layer-wise learning rates, from the head end.

    Returns
    -------
    groups : list of list of `keras.layers.Layer`
        Index 0: every head layer (named ``{head}`` or ``{head}_*``); index 1:
        the last residual module together with the weightless global pooling
        that follows it; index 2: the module before, …; last: the stem
        (``stem*`` layers and the input).  A layer that fits none of these
        raises `ValueError`.
    """
    heads = head_names(model)
    head_group, stem, modules, pooling = [], [], {}, []
    for layer in model.layers:
        n = layer.name
        m = _MODULE_RE.match(n)
        if m:
            modules[int(m.group(1))] = layer
        elif n.startswith("stem") or n == "flux":
            stem.append(layer)
        elif n.startswith("pooled"):
            pooling.append(layer)
        elif any(n == h or n.startswith(f"{h}_") for h in heads):
            head_group.append(layer)
        else:
            raise ValueError(f"layer {n!r} of model {model.name!r} belongs to no group "
                             f"(heads {heads}, 'module_<i>', 'stem*', 'pooled*')")
    if not modules:
        raise ValueError(f"model {model.name!r} has no residual modules named 'module_<i>'")
    order = sorted(modules)
    if order != list(range(len(order))):
        raise ValueError(f"residual modules of model {model.name!r} are not numbered "
                         f"0..{len(order) - 1}: {order}")
    groups = [head_group]
    for k, idx in enumerate(reversed(order)):
        groups.append([modules[idx]] + (pooling if k == 0 else []))
    groups.append(stem)
    return groups
