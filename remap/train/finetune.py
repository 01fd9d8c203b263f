"""Fine-tuning with layer-wise learning rates (Gilda 2025, §5; METHOD.md "Training").

After pre-training on synthetic spectra, deep-REMAP is fine-tuned on labelled
survey spectra with learning-rate limits that shrink with the distance from
the output:

* the heads (every layer of every head: fully connected layers, temperature
  scaling, embedding) get 1/10 of the pre-training limits;
* residual module ``i``, counted from the head end with the last module
  having ``i = 1``, gets 1/(10·(i+1)): 1/20 for the last module, 1/30 for
  the one before, and so on (the paper's examples; its formula "1/10^i" is
  garbled and contradicts them, so the examples are followed);
* the stem (the convolution in front of the first module) is treated like
  the deepest residual module, unless it is frozen.

Shallow layers, which capture features that synthetic and observed spectra
share, thus move least.  Adam divides each gradient by its running RMS, so
scaling *gradients* per layer would change nothing; `LayerwiseAdam` instead
scales the *update* of each variable by multiplying the (scheduled) learning
rate with a per-variable multiplier, all in one optimizer whose state saves
and loads with the model.  Frozen parts (``freeze=("stem",)``) are made
non-trainable, which in Keras 3 also runs their batch normalization in
inference mode (moving statistics are neither used from the batch nor
updated).
"""

from __future__ import annotations

import keras

from .._util.validators import check_real
from ..nn.model import module_layers
from .loop import _SCHEDULE_FIELDS, StageSchedule, train_stage

__all__ = ["HEADS_GROUP", "STEM_GROUP", "parameter_groups", "group_factor",
           "layerwise_multipliers", "layerwise_learning_rates", "LayerwiseAdam",
           "LayerwiseOptimizer", "freeze_parts", "finetune"]

#: Name of the group of all head layers in :func:`parameter_groups`.
HEADS_GROUP = "heads"
#: Name of the stem group.
STEM_GROUP = "stem"

#: `finetune`'s schedule without a `~remap.train.loop.StageSchedule`: its defaults, and the
#: keywords that make one (lr_max and lr_min have no default).
_FINETUNE_SCHEDULE = {"epochs_per_cycle": 30, "n_cycles": 1, "steps_per_epoch": None,
                      "swa": True, "swa_start_cycle": 1, "bn_steps": None}


def _module_layers(model):
    groups = module_layers(model)
    if len(groups) < 2:
        raise ValueError(f"model {model.name!r} has {len(groups)} layer groups; a remap "
                         "network has at least the heads and the stem")
    return groups


def group_factor(position, n_groups):
    """Learning-rate factor of the group at ``position`` from the head end.

    Parameters
    ----------
    position : int
        0 for the heads, 1 for the last residual module, ..., ``n_groups - 1``
        for the stem.
    n_groups : int
        Number of groups (modules + 2).

    Returns
    -------
    float
        1/10 for the heads, 1/(10·(i+1)) for module ``i`` from the head end,
        the deepest module's factor for the stem (1/20 when there is no
        residual module).
    """
    if not (0 <= position < n_groups) or n_groups < 2:
        raise ValueError(f"position must lie in [0, {n_groups - 1}]; received {position}")
    if position == 0:
        return 0.1
    if position == n_groups - 1:
        return 1.0 / (10.0 * max(n_groups - 1, 2))
    return 1.0 / (10.0 * (position + 1))


def parameter_groups(model):
    """The parts of a remap network that fine-tuning treats alike, from the head end.

    Parameters
    ----------
    model : keras.Model
        Built by `remap.nn.model.build_model`.

    Returns
    -------
    list of (name, factor, layers)
        ``("heads", 0.1, [...])`` first, then ``("module_2", 1/20, [...])``,
        ``("module_1", 1/30, [...])``, ..., ``("stem", ..., [...])``: the name
        is the residual module's layer name (its index counted from the
        input side, as in the model), the factor that of `group_factor`.
    """
    groups = _module_layers(model)
    n = len(groups)
    out = []
    for pos, layers in enumerate(groups):
        if pos == 0:
            name = HEADS_GROUP
        elif pos == n - 1:
            name = STEM_GROUP
        else:
            modules = sorted({layer.name for layer in layers if layer.name.startswith("module_")})
            name = modules[0] if len(modules) == 1 else f"group_{pos}"
        out.append((name, group_factor(pos, n), list(layers)))
    return out


def _resolve_parts(model, parts, groups=None):
    """Layers named by ``parts`` (group names, head names, or layer names)."""
    if isinstance(parts, str):
        parts = (parts,)
    groups = parameter_groups(model) if groups is None else groups
    by_group = {name: layers for name, _, layers in groups}
    layer_names = {layer.name: layer for layer in model.layers}
    head_names = sorted({layer.name.split("_")[0] for layer in groups[0][2]})
    chosen = []
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"parts to freeze are names (str); received {part!r}")
        if part in by_group:
            chosen += by_group[part]
        elif part in head_names:
            chosen += [layer for layer in groups[0][2] if layer.name.startswith(part + "_")]
        elif part in layer_names:
            chosen.append(layer_names[part])
        else:
            raise ValueError(f"cannot freeze {part!r}: not a part of model {model.name!r}; "
                             f"parts: {', '.join(by_group)}; heads: {', '.join(head_names)} "
                             "(or a layer name)")
    seen, unique = set(), []
    for layer in chosen:
        if id(layer) not in seen:
            seen.add(id(layer))
            unique.append(layer)
    return unique


def _variable_key(variable):
    return variable.path


def layerwise_multipliers(model):
    """Learning-rate multiplier of every trainable variable, keyed by its path.

    Parameters
    ----------
    model : keras.Model
        A remap network; non-trainable (frozen) layers are left out.

    Returns
    -------
    dict of str to float
        ``variable.path`` -> factor of its group (`parameter_groups`).

    Raises
    ------
    ValueError
        A trainable variable belongs to no group, or two variables share a
        path.
    """
    mult = {}
    for _, factor, layers in parameter_groups(model):
        for layer in layers:
            for var in layer.trainable_weights:
                key = _variable_key(var)
                if key in mult and mult[key] != factor:
                    raise ValueError(f"variable {key!r} is in two layer groups")
                mult[key] = factor
    missing = [v.path for v in model.trainable_weights if _variable_key(v) not in mult]
    if missing:
        raise ValueError(f"trainable variables outside the heads, residual modules and stem: "
                         f"{', '.join(missing)}; layer-wise learning rates are undefined for "
                         "them (freeze them or name the layers after their group)")
    paths = [_variable_key(v) for v in model.trainable_weights]
    if len(set(paths)) != len(paths):
        dup = sorted({p for p in paths if paths.count(p) > 1})
        raise ValueError(f"variables share a path ({', '.join(dup)}); give the layers unique "
                         "names")
    return mult


def layerwise_learning_rates(model, lr_max, lr_min):
    """Fine-tuning learning-rate limits of every trainable variable.

    Parameters
    ----------
    model : keras.Model
    lr_max, lr_min : float
        The pre-training limits (1e-3 and 1e-5 in Gilda 2025).

    Returns
    -------
    dict of str to (float, float)
        ``variable.path`` -> ``(lr_max * f, lr_min * f)`` with the factor ``f``
        of its group: 1/10 for the heads, 1/20 for the last residual module,
        1/30 for the one before, ..., the stem like the deepest module.

    Examples
    --------
    With the pre-training limits 1e-3 → 1e-5, a head kernel gets 1e-4 → 1e-6
    and the last residual module 5e-5 → 5e-7.
    """
    lr_max, lr_min = _check_limits(lr_max, lr_min)
    return {path: (lr_max * f, lr_min * f) for path, f in layerwise_multipliers(model).items()}


def _check_limits(lr_max, lr_min):
    lr_max = check_real("lr_max", lr_max, 0, strict_min=True)
    lr_min = check_real("lr_min", lr_min, 0, strict_min=True)
    if not lr_min <= lr_max:
        raise ValueError(f"lr_min must not exceed lr_max; received lr_max={lr_max!r}, "
                         f"lr_min={lr_min!r}")
    return lr_max, lr_min


@keras.saving.register_keras_serializable(package="remap")
class LayerwiseAdam(keras.optimizers.Adam):
    """Adam whose step for each variable uses ``learning_rate × multipliers[variable.path]``.

    One optimizer carries every per-variable learning rate: the schedule
    (e.g. `remap.train.schedules.CosineRestarts` between the pre-training
    limits) is evaluated once per step and multiplied by the variable's
    factor, so variable ``v`` anneals between ``lr_max·m_v`` and
    ``lr_min·m_v``.  Scaling the update is what works for Adam: its step
    ``lr · m̂ / (√v̂ + ε)`` does not change when the gradient is scaled.

    Parameters
    ----------
    multipliers : dict of str to float
        ``variable.path`` -> factor (`layerwise_multipliers`).
    default_multiplier : float or None
        Factor of a variable missing from ``multipliers``; `None` (default)
        makes such a variable an error when the optimizer is built.
    **kwargs
        `keras.optimizers.Adam` arguments (``learning_rate``, ``beta_1``, ...).

    Raises
    ------
    ValueError
        A multiplier is negative or not finite; (on build) a variable has no
        multiplier.
    """

    def __init__(self, multipliers, default_multiplier=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(multipliers, dict):
            raise TypeError(f"multipliers must be a dict of variable path -> factor; received "
                            f"{type(multipliers).__name__}")
        clean = {}
        for key, value in multipliers.items():
            clean[str(key)] = check_real(f"multiplier of {key!r}", value, 0)
        if default_multiplier is not None:
            check_real("default_multiplier", default_multiplier, 0)
        self.multipliers = clean
        self.default_multiplier = (None if default_multiplier is None
                                   else float(default_multiplier))
        self._factors = []

    def build(self, var_list):
        if self.built:
            return
        factors = []
        missing = []
        for var in var_list:
            key = _variable_key(var)
            if key in self.multipliers:
                factors.append(self.multipliers[key])
            elif self.default_multiplier is not None:
                factors.append(self.default_multiplier)
            else:
                missing.append(key)
        if missing:
            raise ValueError(f"LayerwiseAdam has no learning-rate multiplier for "
                             f"{', '.join(missing)} (known: {len(self.multipliers)} variables);"
                             " build the multipliers from the model being trained")
        super().build(var_list)
        self._factors = factors

    def variable_multiplier(self, variable):
        """The factor applied to ``variable`` (after `build`)."""
        return self._factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        factor = self.variable_multiplier(variable)
        super().update_step(gradient, variable, learning_rate * factor)

    def get_config(self):
        config = super().get_config()
        config.update({"multipliers": dict(self.multipliers),
                       "default_multiplier": self.default_multiplier})
        return config


#: The optimizer used by :func:`finetune` (the name used in the design notes).
LayerwiseOptimizer = LayerwiseAdam


def freeze_parts(model, parts):
    """Make parts of a model non-trainable.

    Parameters
    ----------
    model : keras.Model
    parts : sequence of str
        Group names of `parameter_groups` (``"heads"``, ``"stem"``,
        ``"module_0"``, ...), head names (``"teff"``) or layer names.

    Returns
    -------
    list of str
        Names of the layers frozen.  In Keras 3 a non-trainable
        `~keras.layers.BatchNormalization` runs in inference mode, so frozen
        parts keep their batch statistics too.  Recompile the model afterwards.

    Raises
    ------
    ValueError
        A name matches no part.
    """
    layers = _resolve_parts(model, parts)
    for layer in layers:
        layer.trainable = False
    return [layer.name for layer in layers]


def finetune(model, train_ds, val_ds, schedule: StageSchedule | None = None, *, freeze=(),
             checkpoint_dir=None, log_dir=None, seed: int = 0, **train_options) -> dict:
    """Fine-tune a pre-trained network on survey spectra with layer-wise learning rates.

    Parameters
    ----------
    model : keras.Model
        The pre-trained network, compiled with its losses
        (`remap.nn.model.compile_model`); changed in place.  Its optimizer is
        replaced by a `LayerwiseAdam`.
    train_ds, val_ds : tf.data.Dataset
        ``(flux, targets)`` batches as `remap.train.loop.train_stage` takes
        them.
    schedule : `~remap.train.loop.StageSchedule`
        Its ``lr_max`` and ``lr_min`` are the *pre-training* limits; each part
        gets its fraction of them (`layerwise_learning_rates`).
        `~remap.train.loop.StageSchedule.from_config` builds it from a
        ``[finetune]`` configuration.  Without it the schedule's fields are
        keywords (``lr_max`` and ``lr_min`` required; ``epochs_per_cycle=30``,
        ``n_cycles=1``, ``steps_per_epoch=None``, ``swa=True`` by default).
    freeze : sequence of str
        Parts kept fixed (`freeze_parts`), e.g. ``("stem",)``.
    checkpoint_dir, log_dir, seed
        As in `remap.train.loop.train_stage`.
    **train_options
        More keyword arguments of ``train_stage`` (``verbose``,
        ``initial_epoch``, ...; schedule fields such as ``bn_steps`` replace
        those of ``schedule``).

    Returns
    -------
    dict
        The per-epoch history of ``train_stage`` (``"loss"``, ``"val_loss"``,
        ... as lists), plus ``"final"`` (validation metrics of the returned
        model, after SWA), ``"multipliers"`` (variable path -> factor) and
        ``"frozen"`` (layer names).
    """
    if schedule is None:
        fields = {k: train_options.pop(k) for k in list(train_options)
                  if k in _SCHEDULE_FIELDS}
        missing = [k for k in ("lr_max", "lr_min") if k not in fields]
        if missing:
            raise TypeError(f"finetune() needs a StageSchedule (or the keywords "
                            f"{', '.join(missing)})")
        schedule = StageSchedule(**{**_FINETUNE_SCHEDULE, **fields})
    _check_limits(schedule.lr_max, schedule.lr_min)
    frozen = freeze_parts(model, tuple(freeze)) if freeze else []
    multipliers = layerwise_multipliers(model)
    if not multipliers:
        raise ValueError("every part of the model is frozen; nothing to fine-tune")

    def optimizer_factory(learning_rate):
        return LayerwiseAdam(multipliers, learning_rate=learning_rate)

    result = train_stage(model, train_ds, val_ds, schedule, checkpoint_dir=checkpoint_dir,
                         log_dir=log_dir, seed=seed, optimizer_factory=optimizer_factory,
                         **train_options)
    out = dict(result)
    out["final"] = dict(getattr(result, "final", {}) or {})
    out["multipliers"] = multipliers
    out["frozen"] = frozen
    return out
