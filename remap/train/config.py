"""Training configuration: a TOML file read with `tomllib` into a validated `TrainConfig`.

A configuration file describes one training run of ``remap train``: where the
training data come from (a data set on disk, or settings to build one from a
synthetic library), the survey set used for fine-tuning, the network, every
training stage, cross-validation, ablations, the beams and the seed.  Every
key is optional and has the default documented in ``configs/README.rst``;
the defaults follow Gilda (2025) as summarised in METHOD.md (Adam with a
learning-rate range test, cosine annealing with restarts of 30 epochs x 4
cycles, SWA, fine-tuning at 1/10 of the pre-training limits, triplet weight
λ = 0.001, 10-fold cross-validation).

Validation is strict: an unknown key, a value of the wrong type or out of
range raises `ConfigError` with the file name and the dotted key
(``configs/x.toml: [pretrain] epochs_per_cycle must be an integer >= 1;
received 'ten' (str)``), so that a typo never silently falls back to a
default.

Examples
--------
>>> from remap.train.config import parse_config
>>> cfg = parse_config({"beams": ["A"], "pretrain": {"lr_max": 1e-3, "lr_min": 1e-5}})
>>> cfg.beams, cfg.pretrain.epochs_per_cycle, cfg.pretrain.n_cycles
(('A',), 30, 4)
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path

from .._util.validators import bounds_text, check_real, is_int, is_real
from ..exceptions import RemapError
from ..plugins import list_heads

# remap.nn is imported inside the functions that
# use them: this module loads without TensorFlow.

__all__ = ["ConfigError", "BuildConfig", "SimulateConfig", "SurveyDataConfig", "DataConfig",
           "LossConfig", "FindLRConfig", "PretrainConfig", "FinetuneConfig", "CVConfig",
           "AblationsConfig", "ArtifactConfig", "TrainConfig", "load_config", "parse_config",
           "STAGES"]

#: Stages of ``remap train`` in the order ``all`` runs them.
STAGES = ("find-lr", "pretrain", "finetune", "cv")

_AUTO = "auto"
_FROM_PRETRAIN = "pretrain"


class ConfigError(RemapError, ValueError):
    """A training configuration is missing, not valid TOML, or has a bad key or value."""


# --------------------------------------------------------------------------- field checks

class _Check:
    """Validate one value; ``describe`` is what the error says was expected."""

    def __init__(self, describe, test, convert=None):
        self.describe = describe
        self.test = test
        self.convert = convert

    def __call__(self, value):
        if not self.test(value):
            raise _Bad(self.describe)
        return self.convert(value) if self.convert else value


class _Bad(Exception):
    def __init__(self, expected):
        super().__init__(expected)
        self.expected = expected


def _int(minimum=None, maximum=None):
    return _Check(f"an integer{bounds_text(minimum, maximum)}",
                  lambda v: is_int(v) and (minimum is None or v >= minimum)
                  and (maximum is None or v <= maximum), int)


def _opt_int(minimum=None):
    inner = _int(minimum)
    return _Check(inner.describe + " (or leave it out)",
                  lambda v: v is None or inner.test(v), lambda v: None if v is None else int(v))


def _real(low=None, high=None, *, low_open=False, high_open=False):
    def ok(v):
        try:
            check_real("value", v, low, high, strict_min=low_open, strict_max=high_open)
        except ValueError:
            return False
        return True
    return _Check("a finite number" + bounds_text(low, high, strict_min=low_open,
                                                  strict_max=high_open), ok, float)


def _bool():
    return _Check("true or false", lambda v: isinstance(v, bool), bool)


def _str(choices=None):
    if choices is None:
        return _Check("a non-empty string", lambda v: isinstance(v, str) and v != "", str)
    return _Check("one of " + ", ".join(repr(c) for c in choices),
                  lambda v: isinstance(v, str) and v in choices, str)


def _opt_str():
    return _Check("a non-empty string (or leave it out)",
                  lambda v: v is None or (isinstance(v, str) and v != ""))


def _lr_or(word):
    return _Check(f"a positive number or {word!r}",
                  lambda v: v == word or (is_real(v) and float(v) > 0),
                  lambda v: v if v == word else float(v))


def _list_of(item, *, min_len=0, unique=False):
    def ok(v):
        if not isinstance(v, (list, tuple)) or len(v) < min_len:
            return False
        if unique and len(set(v)) != len(v):
            return False
        return all(item.test(x) for x in v)
    extra = f", at least {min_len} item{'s' if min_len != 1 else ''}" if min_len else ""
    extra += ", no repeats" if unique else ""
    return _Check(f"a list (each item {item.describe}{extra})", ok,
                  lambda v: tuple(item.convert(x) if item.convert else x for x in v))


def _opt_list_of(item, *, min_len=1):
    inner = _list_of(item, min_len=min_len)
    return _Check(inner.describe + " (or leave it out)", lambda v: v is None or inner.test(v),
                  lambda v: None if v is None else inner.convert(v))


def _options():
    return _Check("a table of options (key = value)", lambda v: isinstance(v, dict),
                  lambda v: copy.deepcopy(dict(v)))


def _field(default, check, doc=""):
    if default is dict:
        return dataclasses.field(default_factory=dict, metadata={"check": check, "doc": doc})
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


# --------------------------------------------------------------------------- sections

@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """``[data.build]``: build the synthetic training set with `remap.datasets.build_synthetic`.

    Attributes
    ----------
    library : str
        Synthetic library plugin (``"linelist"``, ``"phoenix"``, ...).
    library_options : dict
        Keyword arguments of the library (e.g. ``resolution``, ``wave_range``
        as ``[min, max]`` in Å, ``directory``).
    n : int or None
        Number of label points drawn uniformly (seeded) in the library
        domain; leave out and set ``grid = true`` to use the library's grid.
    grid : bool
        Use the library's grid points.
    vary_alpha : bool
        Draw [α/Fe] too.
    seed : int or None
        Seed of the label draws and the noise (default: the top-level seed).
    shard_size : int
        Label points per shard.
    resolutions, noise_levels, draws
        Augmentation (default: R = 10,000/11,000/12,000, σ = 0.5-2 % in 5
        steps, 3 draws: 45 spectra per label point, Gilda 2025 §3.3).
    fitter : str
        Continuum fitter (``"none"`` stores un-normalized flux).
    fitter_options : dict
    workers : int
        Processes building in parallel (same result for any value).
    coverage_probability : float
        Fraction of the training spectra that lose part of each beam (the
        partial-coverage augmentation, `remap.augment.drop_coverage`; 0 turns
        it off).  Default 0.5.
    coverage_max_fraction : float
        Largest fraction of a beam dropped (at either end or as a gap inside;
        uniform from 0).  Default 0.4.
    vmicro_sigma : float
        Microturbulence as a nuisance dimension: each label point's
        microturbulence is the library's at its labels plus a Gaussian draw of
        this width, km/s (``build_synthetic(vmicro_sigma=)``; linelist
        library only).  Default 0 (off).
    """

    library: str = _field("linelist", _str())
    library_options: dict = _field(dict, _options())
    n: int | None = _field(None, _opt_int(1))
    grid: bool = _field(False, _bool())
    vary_alpha: bool = _field(False, _bool())
    seed: int | None = _field(None, _opt_int(0))
    shard_size: int = _field(20, _int(1))
    resolutions: tuple | None = _field(None, _opt_list_of(_real(0, low_open=True)))
    noise_levels: tuple | None = _field(None, _opt_list_of(_real(0)))
    draws: int | None = _field(None, _opt_int(1))
    fitter: str = _field("algorithm1", _str())
    fitter_options: dict = _field(dict, _options())
    workers: int = _field(1, _int(1))
    coverage_probability: float = _field(0.5, _real(0, 1))
    coverage_max_fraction: float = _field(0.4, _real(0, 0.99))
    vmicro_sigma: float = _field(0.0, _real(0, 5))


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    """``[data.survey.simulate]``: simulate a survey set with `remap.simulate.build_simulated`.

    Attributes
    ----------
    set : {"dwarfs", "calibration", "giants"}
    n : int or None
        Number of stars (default: the paper's size of the set, 2,313 dwarfs).
    seed : int or None
        Default: the top-level seed.
    shard_size : int
    fitter : str
    library_options : dict
    simulation : dict
        Options of `remap.simulate.SimulationConfig`: how the simulated
        survey differs from the library (e.g. ``loggf_sigma = 0.0`` for a
        survey whose line data are the library's own).
    """

    set: str = _field("dwarfs", _str(("dwarfs", "calibration", "giants")))
    n: int | None = _field(None, _opt_int(1))
    seed: int | None = _field(None, _opt_int(0))
    shard_size: int = _field(500, _int(1))
    fitter: str = _field("algorithm1", _str())
    library_options: dict = _field(dict, _options())
    simulation: dict = _field(dict, _options())


@dataclasses.dataclass(frozen=True)
class SurveyDataConfig:
    """``[data.survey]``: the labelled survey spectra used for fine-tuning.

    Exactly one of ``dataset`` (a data-set directory) and ``simulate``.

    Attributes
    ----------
    dataset : str or None
        Path (relative paths are relative to the configuration file).
    simulate : `SimulateConfig` or None
    validation_fraction : float
        Fraction of the stars held out for validation (0 < f < 1).
    """

    dataset: str | None = _field(None, _opt_str())
    simulate: SimulateConfig | None = _field(None, SimulateConfig)
    validation_fraction: float = _field(0.1, _real(0, 1, low_open=True, high_open=True))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``[data]``: training data.

    Exactly one of ``dataset`` and ``[data.build]``.

    Attributes
    ----------
    dataset : str or None
        Existing training set (``remap dataset build``).
    build : `BuildConfig` or None
        Build one into ``OUT/data/train``.
    survey : `SurveyDataConfig` or None
        Fine-tuning set; without it, the fine-tuning stage is skipped.
    survey_name : str
        Survey plugin whose beams are trained (``"marvels"``).
    validation_fraction : float
        Fraction of the label points of the training set held out for
        validation (all augmentations of a label point go to the same side).
    """

    dataset: str | None = _field(None, _opt_str())
    build: BuildConfig | None = _field(None, BuildConfig)
    survey: SurveyDataConfig | None = _field(None, SurveyDataConfig)
    survey_name: str = _field("marvels", _str())
    validation_fraction: float = _field(0.1, _real(0, 1, low_open=True, high_open=True))


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """``[loss]``: L = Σ_p (focal_p + λ_p · triplet_p) (Gilda 2025, Eq. 6).

    Attributes
    ----------
    triplet_weight : float
        λ (0.001 in the paper).
    gamma : float
        Focusing parameter of the focal loss (Lin et al. 2017: 2).
    margin : float
        Triplet margin.
    """

    triplet_weight: float = _field(0.001, _real(0))
    gamma: float = _field(2.0, _real(0))
    margin: float = _field(0.2, _real(0, low_open=True))


@dataclasses.dataclass(frozen=True)
class FindLRConfig:
    """``[find_lr]``: learning-rate range test (exponential growth until the loss diverges).

    Attributes
    ----------
    lr_start, lr_end : float
    steps : int
    divergence : float
        Stop once the loss exceeds ``divergence`` × its minimum.
    batch_size : int or None
        Default: ``[pretrain] batch_size``.
    rule : {"steepest", "minimum"}
        How ``"auto"`` learning-rate limits are read off the curve
        (`remap.train.lr_finder.suggest_lr`): at the steepest descent of the
        loss (default) or one decade below its minimum.
    """

    lr_start: float = _field(1e-7, _real(0, low_open=True))
    lr_end: float = _field(10.0, _real(0, low_open=True))
    steps: int = _field(100, _int(5))
    divergence: float = _field(4.0, _real(1, low_open=True))
    batch_size: int | None = _field(None, _opt_int(1))
    rule: str = _field("steepest", _str(("steepest", "minimum")))


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """``[pretrain]``: training on the synthetic set.

    Attributes
    ----------
    lr_max, lr_min : float or "auto"
        Cosine limits; ``"auto"`` takes them from the range test (the paper's
        result: 1e-3 and 1e-5).
    epochs_per_cycle, n_cycles : int
        30 and 4 in the paper.
    batch_size : int
    swa : bool
        Stochastic weight averaging at the end of each cycle.
    steps_per_epoch : int or None
        Default: one pass over the training split.
    bn_batches : int or None
        Batches used to re-estimate the batch-norm statistics after SWA
        (default: one pass over the training split).
    """

    lr_max: float | str = _field(_AUTO, _lr_or(_AUTO))
    lr_min: float | str = _field(_AUTO, _lr_or(_AUTO))
    epochs_per_cycle: int = _field(30, _int(1))
    n_cycles: int = _field(4, _int(1))
    batch_size: int = _field(64, _int(1))
    swa: bool = _field(True, _bool())
    steps_per_epoch: int | None = _field(None, _opt_int(1))
    bn_batches: int | None = _field(None, _opt_int(1))


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """``[finetune]``: transfer to the survey set with layer-wise learning rates.

    Attributes
    ----------
    lr_max, lr_min : float or "pretrain"
        Base limits the layer-wise fractions apply to (heads 1/10, module i
        from the head end 1/(10(i+1))); ``"pretrain"`` uses the pre-training
        limits, as in the paper.
    freeze : list of str
        Parts kept fixed (``"stem"``, ``"module_0"``, ...; see
        `remap.train.finetune.parameter_groups`).
    epochs_per_cycle, n_cycles, batch_size, swa, steps_per_epoch, bn_batches
        As in `PretrainConfig`.
    """

    lr_max: float | str = _field(_FROM_PRETRAIN, _lr_or(_FROM_PRETRAIN))
    lr_min: float | str = _field(_FROM_PRETRAIN, _lr_or(_FROM_PRETRAIN))
    freeze: tuple = _field((), _list_of(_str(), unique=True))
    epochs_per_cycle: int = _field(30, _int(1))
    n_cycles: int = _field(1, _int(1))
    batch_size: int = _field(32, _int(1))
    swa: bool = _field(True, _bool())
    steps_per_epoch: int | None = _field(None, _opt_int(1))
    bn_batches: int | None = _field(None, _opt_int(1))


@dataclasses.dataclass(frozen=True)
class CVConfig:
    """``[cv]``: k-fold cross-validation of candidate architectures.

    Attributes
    ----------
    enabled : bool
        Run cross-validation as part of ``--stage all`` (``--stage cv`` always
        runs it).
    select : bool
        Train the later stages with the best architecture of the
        cross-validation of that beam (when one has been run) instead of
        ``[network]``.
    k : int
        Folds (10 in the paper).
    epochs : int
        Epochs per fold (one cosine cycle).
    batch_size : int
    lr_max, lr_min : float or "pretrain"
    max_label_points : int or None
        Use a seeded subset of the label points, to keep the search cheap.
    architectures : dict
        Name -> network table (the ``[network]`` keys); default: the
        ``[network]`` of this file alone.
    """

    enabled: bool = _field(False, _bool())
    select: bool = _field(False, _bool())
    k: int = _field(10, _int(2))
    epochs: int = _field(5, _int(1))
    batch_size: int = _field(64, _int(1))
    lr_max: float | str = _field(_FROM_PRETRAIN, _lr_or(_FROM_PRETRAIN))
    lr_min: float | str = _field(_FROM_PRETRAIN, _lr_or(_FROM_PRETRAIN))
    max_label_points: int | None = _field(None, _opt_int(2))
    architectures: dict = _field(dict, None)


@dataclasses.dataclass(frozen=True)
class AblationsConfig:
    """``[ablations]`` (Gilda 2025 §5): switch parts of the method off.

    Attributes
    ----------
    no_triplet : bool
        Train without the triplet loss (λ = 0).
    single_task : bool
        One network per head instead of one multi-task network.
    no_swa : bool
        No stochastic weight averaging in any stage.
    no_finetune : bool
        Ship the pre-trained network.
    """

    no_triplet: bool = _field(False, _bool())
    single_task: bool = _field(False, _bool())
    no_swa: bool = _field(False, _bool())
    no_finetune: bool = _field(False, _bool())


@dataclasses.dataclass(frozen=True)
class ArtifactConfig:
    """``[artifact]``: what the saved model carries besides the networks.

    Attributes
    ----------
    embeddings_sample : int
        Training spectra whose embeddings are stored for nearest-neighbour
        look-ups (0: none).
    """

    embeddings_sample: int = _field(2000, _int(0))


_SECTIONS = {"data": DataConfig, "loss": LossConfig, "find_lr": FindLRConfig,
             "pretrain": PretrainConfig, "finetune": FinetuneConfig, "cv": CVConfig,
             "ablations": AblationsConfig, "artifact": ArtifactConfig}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A validated training configuration (see the module docstring and ``configs/README.rst``).

    Attributes
    ----------
    seed : int
    beams : tuple of str
        Beams to train, one network each (``("A", "B")``).
    heads : tuple of str or None
        Heads (default: every registered head).
    deterministic : bool
        Enable TensorFlow's deterministic ops (same seed, same result on CPU).
    data, network, loss, find_lr, pretrain, finetune, cv, ablations, artifact
        The sections; ``network`` is a dict of `remap.nn.model.NetworkConfig`
        fields (validated).
    source : str
        Where the configuration came from (file path or ``"<dict>"``).
    """

    seed: int = 0
    beams: tuple = ("A", "B")
    heads: tuple | None = None
    deterministic: bool = True
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    network: dict = dataclasses.field(default_factory=dict)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    find_lr: FindLRConfig = dataclasses.field(default_factory=FindLRConfig)
    pretrain: PretrainConfig = dataclasses.field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)
    cv: CVConfig = dataclasses.field(default_factory=CVConfig)
    ablations: AblationsConfig = dataclasses.field(default_factory=AblationsConfig)
    artifact: ArtifactConfig = dataclasses.field(default_factory=ArtifactConfig)
    source: str = "<dict>"

    @property
    def base_dir(self):
        """Directory relative paths are resolved against (the file's, or the cwd)."""
        p = Path(self.source)
        return p.parent if p.suffix else Path.cwd()

    def resolve_path(self, value):
        """``value`` as a `~pathlib.Path`, relative to :attr:`base_dir` when not absolute."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def network_config(self, overrides=None):
        """The `remap.nn.model.NetworkConfig` of ``[network]`` (updated with ``overrides``)."""
        from ..nn.model import NetworkConfig
        return NetworkConfig.from_dict({**self.network, **(overrides or {})})

    def to_dict(self):
        """The configuration as plain JSON/TOML values (sections as dicts, tuples as lists)."""
        def plain(obj):
            if dataclasses.is_dataclass(obj):
                return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            if isinstance(obj, dict):
                return {str(k): plain(v) for k, v in obj.items()}
            if isinstance(obj, (list, tuple)):
                return [plain(v) for v in obj]
            return obj
        out = plain(self)
        out.pop("source")
        return out


# --------------------------------------------------------------------------- parsing

def _type_name(value):
    return type(value).__name__


def _fail(source, where, message):
    raise ConfigError(f"{source}: {where}{message}")


def _label(section, key):
    return f"[{section}] {key}" if section else key


def _parse_section(cls, table, section, source):
    """Check a TOML table against the fields of dataclass ``cls``; return an instance."""
    if not isinstance(table, dict):
        _fail(source, "", f"[{section}] must be a table; received {table!r} "
              f"({_type_name(table)})")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(names))
    if unknown:
        _fail(source, "", f"unknown key {_label(section, unknown[0])!s} (known keys of "
              f"[{section}]: {', '.join(sorted(names))})")
    values = {}
    for name, f in names.items():
        check = f.metadata.get("check")
        if name not in table:
            continue
        value = table[name]
        if isinstance(check, type) and dataclasses.is_dataclass(check):
            values[name] = _parse_section(check, value, f"{section}.{name}", source)
            continue
        if check is None:
            values[name] = value
            continue
        try:
            values[name] = check(value)
        except _Bad as bad:
            _fail(source, "", f"{_label(section, name)} must be {bad.expected}; received "
                  f"{value!r} ({_type_name(value)})")
    return cls(**values)


def _check_network(table, where, source):
    """Validate a network table with `NetworkConfig.from_dict`; return it as a plain dict."""
    if not isinstance(table, dict):
        _fail(source, "", f"{where} must be a table of network settings; received "
              f"{table!r} ({_type_name(table)})")
    from ..nn.model import NetworkConfig
    known = {f.name for f in dataclasses.fields(NetworkConfig)}
    unknown = sorted(set(table) - known)
    if unknown:
        _fail(source, "", f"unknown key {where} {unknown[0]} (known keys: "
              f"{', '.join(sorted(known))})")
    try:
        cfg = NetworkConfig.from_dict(dict(table))
    except (TypeError, ValueError) as exc:
        _fail(source, "", f"{where}: {exc}")
    return dict(cfg.to_dict())


def parse_config(data, source="<dict>"):
    """Validate a configuration given as a dict (as `tomllib` returns it).

    Parameters
    ----------
    data : dict
    source : str
        Named in error messages (the file path).

    Returns
    -------
    `TrainConfig`

    Raises
    ------
    ConfigError
        An unknown key, a wrong type or value, or inconsistent settings.
    """
    source = str(source)
    if not isinstance(data, dict):
        _fail(source, "", f"a configuration must be a table; received {_type_name(data)}")
    top = {"seed", "beams", "heads", "deterministic", "network", *_SECTIONS}
    unknown = sorted(set(data) - top)
    if unknown:
        _fail(source, "", f"unknown key {unknown[0]!r} (known top-level keys and sections: "
              f"{', '.join(sorted(top))})")
    values = {"source": source}
    scalars = {"seed": _int(0), "beams": _list_of(_str(), min_len=1, unique=True),
               "heads": _opt_list_of(_str()), "deterministic": _bool()}
    for key, check in scalars.items():
        if key in data:
            try:
                values[key] = check(data[key])
            except _Bad as bad:
                _fail(source, "", f"{key} must be {bad.expected}; received {data[key]!r} "
                      f"({_type_name(data[key])})")
    for key, cls in _SECTIONS.items():
        if key in data:
            values[key] = _parse_section(cls, data[key], key, source)
    values["network"] = _check_network(data.get("network", {}), "[network]", source)
    if "cv" in data:
        cv = values["cv"]
        archs = cv.architectures
        if not isinstance(archs, dict):
            _fail(source, "", f"[cv] architectures must be a table of name = {{network "
                  f"settings}}; received {archs!r} ({_type_name(archs)})")
        checked = {name: _check_network(arch, f"[cv.architectures.{name}]", source)
                   for name, arch in archs.items()}
        values["cv"] = dataclasses.replace(cv, architectures=checked)
    cfg = TrainConfig(**values)
    _check_consistency(cfg, source)
    return cfg


def _check_consistency(cfg, source):
    data = cfg.data
    if (data.dataset is None) == (data.build is None):
        _fail(source, "", "give the training data either as [data] dataset = \"path\" or as a "
              "[data.build] table, exactly one of the two"
              + (" (both are set)" if data.dataset is not None else " (neither is set)"))
    if data.build is not None and (data.build.n is None) == (not data.build.grid):
        _fail(source, "", "[data.build] needs exactly one of n = <label points> and "
              "grid = true")
    sv = data.survey
    if sv is not None and (sv.dataset is None) == (sv.simulate is None):
        _fail(source, "", "[data.survey] needs exactly one of dataset = \"path\" and "
              "simulate = {set = ..., n = ...}")
    if (cfg.pretrain.lr_max == _AUTO) != (cfg.pretrain.lr_min == _AUTO):
        _fail(source, "", "[pretrain] lr_max and lr_min must both be numbers or both "
              f"'auto'; received lr_max={cfg.pretrain.lr_max!r}, lr_min={cfg.pretrain.lr_min!r}")
    for name, sec in (("pretrain", cfg.pretrain), ("finetune", cfg.finetune), ("cv", cfg.cv)):
        if isinstance(sec.lr_max, float) and isinstance(sec.lr_min, float) \
                and not sec.lr_min < sec.lr_max:
            _fail(source, "", f"[{name}] lr_min must be smaller than lr_max; received "
                  f"lr_max={sec.lr_max!r}, lr_min={sec.lr_min!r}")
    if not cfg.find_lr.lr_start < cfg.find_lr.lr_end:
        _fail(source, "", f"[find_lr] lr_start must be smaller than lr_end; received "
              f"lr_start={cfg.find_lr.lr_start!r}, lr_end={cfg.find_lr.lr_end!r}")
    if cfg.heads is not None:
        known = list(list_heads())
        for h in cfg.heads:
            if h not in known:
                _fail(source, "", f"heads: unknown head {h!r} (registered heads: "
                      f"{', '.join(known)})")


def load_config(path):
    """Read and validate a TOML training configuration.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    `TrainConfig`
        With ``source`` set to the path (relative data paths in the file are
        relative to its directory).

    Raises
    ------
    ConfigError
        The file is missing or unreadable, is not valid TOML, or fails
        validation (the message names the file and the key).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, source=str(path))
