"""``remap train``: the whole training chain from a configuration file to a model artifact.

For each beam (one network per beam, Gilda 2025 §5) :class:`TrainRunner`

1. builds or opens the training set (``[data]``) and the fine-tuning survey
   set (``[data.survey]``) and splits both, seeded, into training and
   validation parts (all augmentations of a synthetic label point on the same
   side);
2. ``cv`` (optional): k-fold cross-validation of the ``[cv]`` architectures
   (`remap.train.cv.cross_validate`), written to ``cv/cv_<beam>.ecsv``;
3. ``find-lr``: the learning-rate range test (`remap.train.lr_finder.find_lr`),
   writing its plot and suggestion to ``beam_<B>/find_lr/``; it also runs
   whenever ``[pretrain]`` asks for ``"auto"`` limits;
4. ``pretrain``: `remap.train.loop.train_stage` on the synthetic set (cosine
   restarts, SWA, per-epoch checkpoints);
5. ``finetune``: from the pre-trained weights on the survey set with
   layer-wise learning rates (`remap.train.finetune.finetune`), unless
   ``[ablations] no_finetune`` or there is no survey set;
6. writes the artifact ``OUT/model`` with `remap.model.save_model`: the
   networks, a manifest (heads and bins, survey and beam grids, continuum
   fitter, library and data-set summaries, the configuration, validation
   metrics, versions) and a sample of training-set embeddings for
   nearest-neighbour look-ups.

Output directory::

    OUT/config.json                 the validated configuration of the last run
    OUT/data/train, data/survey     data sets built here (if the config builds them)
    OUT/cv/cv_<B>.ecsv              cross-validation tables
    OUT/beam_<B>/find_lr/           lr_finder.png, lr_finder.json
    OUT/beam_<B>/<stage>/           stage.json, checkpoints/, logs, model.keras
    OUT/beam_<B>/metrics.json       validation metrics of the final network
    OUT/model/                      the artifact

Re-running the same command resumes: data sets are completed, not rebuilt;
finished stages whose settings (``stage.json`` signature) are unchanged are
reused; an interrupted stage continues from its last epoch checkpoint.  A
stage whose settings changed is redone from scratch, and so are the stages
after it (their signatures include the signature of their input).
``resume=False`` (``--no-resume``) redoes the requested stages.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import astropy.units as u
import numpy as np

from ..datasets import Dataset, DatasetError, build_synthetic, draw_labels, grid_labels
from ..labels import LabelEncoder
from ..model.artifact import save_model
from ..model.runtime import compute_embeddings
from ..model.templates import build_templates
from ..plugins import get_continuum_fitter, get_head, get_library, get_survey, list_heads
from ..simulate import SimulationConfig, build_simulated
from ..exceptions import RemapError
from .._util.fs import atomic_path, atomic_write_text
from .._util.json import json_default
from .._util.validators import wavelength_range
from .._util.stats import mad_sigma
from .config import STAGES, TrainConfig, load_config
from .cv import cross_validate, sample_groups, split_groups, tf_pipeline

# remap.nn and the TensorFlow parts of remap.train are imported inside the functions that
# use them: this module loads without TensorFlow.

__all__ = ["RunnerError", "TrainRunner", "run_training", "RUN_ORDER"]

#: Order in which ``--stage all`` runs the stages (cross-validation only with
#: ``[cv] enabled = true``).
RUN_ORDER = ("cv", "find-lr", "pretrain", "finetune")

_METRICS_MAX = 5000


class RunnerError(RemapError):
    """The training run cannot go on (inconsistent data, missing inputs)."""


def _atomic_write_text(path, text):
    atomic_write_text(path, text, prefix=f".tmp-{Path(path).name}.")


def _write_json(path, obj):
    _atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=json_default)
                       + "\n")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _digest(obj):
    text = json.dumps(obj, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_keras_atomic(model, path):
    with atomic_path(path, prefix=".tmp-", suffix=".keras") as tmp:
        model.save(tmp)


def _plain_history(result):
    """The per-epoch lists of a ``train_stage`` result (History, dict or None) as JSON."""
    hist = getattr(result, "history", result)
    if isinstance(hist, dict) and isinstance(hist.get("history"), dict):
        hist = hist["history"]
    out = {}
    if isinstance(hist, dict):
        for key, values in hist.items():
            if isinstance(values, (list, tuple, np.ndarray)):
                try:
                    out[str(key)] = [float(v) for v in values]
                except (TypeError, ValueError):
                    continue
    return out


def _dataset_summary(dataset):
    m = dataset.manifest
    return {"path": str(dataset.directory), "n_samples": len(dataset), "survey": dataset.survey,
            "beams": {b: {"npix": m["beams"][b]["npix"], "wave_min": m["beams"][b]["wave_min"],
                          "wave_max": m["beams"][b]["wave_max"]} for b in dataset.beams},
            "labels": list(dataset.label_names), "config": m.get("config", {}),
            "summary": m.get("summary", {})}


def _eager_loss_and_predictions(model, flux, targets, batch_size=256):
    """The compiled loss (sample-weighted mean over batches) and the outputs, run eagerly.

    Eager batches avoid tracing Keras' evaluate/predict functions for a
    single pass over a validation split, which costs more than the pass.
    """
    total, n = 0.0, 0
    outputs = {}
    for start in range(0, flux.shape[0], batch_size):
        x = flux[start:start + batch_size]
        y = {k: v[start:start + batch_size] for k, v in targets.items()}
        pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=pred, training=False)
        total += float(loss) * x.shape[0]
        n += x.shape[0]
        for key, value in pred.items():
            outputs.setdefault(key, []).append(np.asarray(value))
    return ({"loss": total / max(n, 1)},
            {k: np.concatenate(v) for k, v in outputs.items()})


def _library_options(options):
    """Library options from TOML: ``wave_range = [min, max]`` (Å) becomes a Quantity."""
    out = dict(options)
    value = out.get("wave_range")
    if isinstance(value, (list, tuple)):
        try:
            out["wave_range"] = wavelength_range(value, "library option wave_range",
                                                 default_unit=u.AA)
        except (TypeError, ValueError) as exc:
            raise RunnerError(f"{exc}; give it as [min, max] in Å") from None
    return out


class TrainRunner:
    """Runs the stages of a `~remap.train.config.TrainConfig` into an output directory.

    Parameters
    ----------
    config : `~remap.train.config.TrainConfig`
    out : str or path
        Output directory (created).
    resume : bool
        Reuse finished stages and continue interrupted ones (default); False
        redoes the requested stages (data sets are always reused: they are
        verified against their manifests and deterministic).
    echo : callable, optional
        Receives progress messages (default: discard).
    verbose : int
        Keras verbosity of the training loops (0 silent, 2 one line per epoch).
    """

    def __init__(self, config, out, *, resume=True, echo=None, verbose=0):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig (remap.train.config.load_config); "
                            f"received {type(config).__name__}")
        self.config = config
        self.out = Path(out)
        self.resume = bool(resume)
        self.echo = echo or (lambda message: None)
        self.verbose = int(verbose)
        self._train = None
        self._survey = None
        self._splits = {}
        self._heads = None
        self._lr_cache = {}
        self._requested = ()

    # ------------------------------------------------------------------ setup
    @property
    def heads(self):
        """The `~remap.heads.HeadSpec` s trained (``heads`` of the config, or all registered)."""
        if self._heads is None:
            names = self.config.heads or tuple(list_heads())
            self._heads = [get_head(n) for n in names]
        return self._heads

    def beam_dir(self, beam):
        return self.out / f"beam_{beam}"

    def _seed_tf(self, seed):
        import keras
        keras.utils.set_random_seed(int(seed))
        if self.config.deterministic:
            import tensorflow as tf
            tf.config.experimental.enable_op_determinism()

    def training_set(self):
        """The training set (`remap.datasets.Dataset`), built into ``OUT/data/train`` if needed."""
        if self._train is None:
            data = self.config.data
            if data.dataset is not None:
                path = self.config.resolve_path(data.dataset)
                try:
                    ds = Dataset(path)
                except DatasetError as exc:
                    raise RunnerError(f"[data] dataset: {exc}") from None
            else:
                ds = self._build_training_set()
            if not ds.complete:
                raise RunnerError(f"the training set {ds.directory} is incomplete; finish it "
                                  "with 'remap dataset build' (same options) first")
            missing = [b for b in self.config.beams if b not in ds.beams]
            if missing:
                raise RunnerError(f"the training set {ds.directory} has no beam(s) "
                                  f"{missing}; it has {ds.beams}")
            self._train = ds
        return self._train

    def _build_training_set(self):

        b = self.config.data.build
        seed = self.config.seed if b.seed is None else b.seed
        directory = self.out / "data" / "train"
        options = _library_options(b.library_options)
        try:
            library = get_library(b.library, **options)
            survey = get_survey(self.config.data.survey_name)
        except (TypeError, ValueError, RemapError) as exc:
            raise RunnerError(f"[data.build]: {exc}") from None
        if b.grid:
            labels = grid_labels(library)
        else:
            labels = draw_labels(library.domain, b.n, seed, vary_alpha=b.vary_alpha)
        self.echo(f"training set: building {len(labels)} label points from the {b.library!r} "
                  f"library into {directory} (an interrupted build resumes; a set built with "
                  "other settings is replaced)")
        summary = build_synthetic(
            directory, library, survey, labels, seed=seed, shard_size=b.shard_size,
            beams=list(self.config.beams), resolutions=b.resolutions,
            noise_levels=b.noise_levels, draws=b.draws,
            fitter=None if b.fitter.lower() == "none" else b.fitter,
            fitter_options=dict(b.fitter_options), workers=b.workers, overwrite=True,
            coverage=None if b.coverage_probability == 0 or b.fitter.lower() == "none" else
            {"probability": b.coverage_probability, "max_fraction": b.coverage_max_fraction},
            vmicro_sigma=b.vmicro_sigma,
            config={"library_options": json.loads(json.dumps(b.library_options)),
                    "labels": "grid" if b.grid else "uniform",
                    "vary_alpha": bool(b.vary_alpha)})
        self.echo(f"training set: {summary['n_samples']} spectra ({summary['shards_written']} "
                  f"shards written, {summary['shards_skipped']} reused)")
        return Dataset(directory)

    def survey_set(self):
        """The fine-tuning set (`remap.datasets.Dataset`), or None without ``[data.survey]``."""
        sv = self.config.data.survey
        if sv is None:
            return None
        if self._survey is None:
            if sv.dataset is not None:
                try:
                    ds = Dataset(self.config.resolve_path(sv.dataset))
                except DatasetError as exc:
                    raise RunnerError(f"[data.survey] dataset: {exc}") from None
            else:
                sim = sv.simulate
                try:
                    sim_config = SimulationConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                     for k, v in sim.simulation.items()})
                except (TypeError, ValueError) as exc:
                    raise RunnerError(f"[data.survey.simulate] simulation: {exc}") from None
                directory = self.out / "data" / f"survey_{sim.set}"
                self.echo(f"survey set: simulating {sim.n or 'the default number of'} "
                          f"{sim.set} into {directory} (an interrupted build resumes)")
                summary = build_simulated(
                    directory, sim.set, n=sim.n,
                    seed=self.config.seed if sim.seed is None else sim.seed,
                    survey=self.config.data.survey_name, shard_size=sim.shard_size,
                    overwrite=True, config=sim_config,
                    fitter=sim.fitter, library_options=_library_options(sim.library_options))
                self.echo(f"survey set: {summary['n_samples']} stars "
                          f"({summary['shards_written']} shards written, "
                          f"{summary['shards_skipped']} reused)")
                ds = Dataset(directory)
            train = self.training_set()
            for beam in self.config.beams:
                if beam not in ds.beams:
                    raise RunnerError(f"the survey set {ds.directory} has no beam {beam!r}; it "
                                      f"has {ds.beams}")
                a, b = train.manifest["beams"][beam], ds.manifest["beams"][beam]
                if a["npix"] != b["npix"] or not np.allclose(
                        [a["wave_min"], a["wave_max"]], [b["wave_min"], b["wave_max"]]):
                    raise RunnerError(
                        f"beam {beam!r}: the survey set's grid ({b['wave_min']}-"
                        f"{b['wave_max']} Å, {b['npix']} px) differs from the training set's "
                        f"({a['wave_min']}-{a['wave_max']} Å, {a['npix']} px)")
            ft = (train.manifest.get("config", {}).get("fitter") or {}).get("name")
            fs = (ds.manifest.get("config", {}).get("fitter") or {}).get("name")
            if ft and fs and ft != fs:
                raise RunnerError(f"the training set was continuum-normalized with {ft!r} and "
                                  f"the survey set with {fs!r}; use the same fitter for both")
            self._survey = ds
        return self._survey

    def split(self, which):
        """(train, validation) sample indices of the ``"train"`` or ``"survey"`` set (seeded)."""
        if which not in self._splits:
            if which == "train":
                ds, frac = self.training_set(), self.config.data.validation_fraction
                groups = sample_groups(ds)
            else:
                ds, frac = self.survey_set(), self.config.data.survey.validation_fraction
                groups = np.arange(len(ds))
            try:
                self._splits[which] = split_groups(groups, frac, self.config.seed)
            except ValueError as exc:
                raise RunnerError(f"{which} set {ds.directory}: {exc}") from None
        return self._splits[which]

    def _pipelines(self, dataset, which, beam, heads, batch_size, seed):
        tr, va = self.split(which)
        train = tf_pipeline(dataset, beam, heads, batch_size, indices=tr, shuffle=True,
                            seed=seed, drop_remainder=tr.size > batch_size)
        val = tf_pipeline(dataset, beam, heads, batch_size, indices=va, shuffle=False)
        return train, val

    def _data_identity(self, dataset):
        m = dataset.manifest
        return {"config": m.get("config", {}), "n": len(dataset),
                "shards": [e["sha256"] for e in m.get("shards", [])]}

    # ------------------------------------------------------------------ stages
    def _compile_options(self):
        loss = self.config.loss
        return {"use_triplet": not self.config.ablations.no_triplet,
                "triplet_weight": loss.triplet_weight, "gamma": loss.gamma,
                "margin": loss.margin}

    def _network(self, beam):
        """The NetworkConfig of a beam: ``[network]``, or the CV winner with ``[cv] select``."""
        from ..nn.model import NetworkConfig
        if self.config.cv.select:
            table_path = self.out / "cv" / f"cv_{beam}.ecsv"
            if table_path.is_file():
                from astropy.table import Table
                table = Table.read(table_path)
                best = table.meta["best"]
                row = table[list(table["architecture"]).index(best)]
                self.echo(f"beam {beam}: using architecture {best!r} chosen by "
                          "cross-validation")
                return NetworkConfig.from_dict(json.loads(row["config"]))
        return self.config.network_config()

    def _tasks(self):
        """Head groups trained together: all heads, or one per head (single_task ablation)."""
        if self.config.ablations.single_task:
            return [(h.name, [h]) for h in self.heads]
        return [(None, list(self.heads))]

    def _stage_dir(self, beam, stage, task=None):
        return self.beam_dir(beam) / (stage if task is None else f"{stage}_{task}")

    def _begin_stage(self, directory, signature, stage):
        """Prepare a stage directory; return the finished model path if it can be reused.

        Without ``resume``, a requested stage starts over; a stage that is only
        an input of the requested one (pre-training for ``--stage finetune``)
        is still reused.
        """
        directory = Path(directory)
        state = _read_json(directory / "stage.json")
        model_path = directory / "model.keras"
        redo = not self.resume and stage in self._requested
        if state is not None and (state.get("signature") != signature or redo):
            reason = "--no-resume" if redo else "settings changed"
            self.echo(f"  {directory.name}: starting over ({reason})")
            shutil.rmtree(directory)
            state = None
        if state is not None and state.get("complete") and model_path.is_file():
            return model_path
        directory.mkdir(parents=True, exist_ok=True)
        _write_json(directory / "stage.json", {"signature": signature, "complete": False})
        return None

    def _end_stage(self, directory, signature, model, info):
        _save_keras_atomic(model, Path(directory) / "model.keras")
        _write_json(Path(directory) / "stage.json",
                    {"signature": signature, "complete": True, **info})

    def find_lr(self, beam, task=None, heads=None):
        """Run (or reuse) the learning-rate range test of a beam; return its JSON record."""
        from ..nn.model import build_model, compile_model
        from .lr_finder import find_lr

        heads = list(self.heads) if heads is None else heads
        cfg = self.config
        directory = self.beam_dir(beam) / ("find_lr" if task is None else f"find_lr_{task}")
        network = self._network(beam)
        batch = cfg.find_lr.batch_size or cfg.pretrain.batch_size
        signature = _digest({"network": network.to_dict(), "find_lr": cfg.to_dict()["find_lr"],
                             "batch": batch, "loss": self._compile_options(),
                             "heads": [h.name for h in heads], "seed": cfg.seed,
                             "data": self._data_identity(self.training_set()),
                             "split": cfg.data.validation_fraction})
        record_path = directory / "lr_finder.json"
        record = _read_json(record_path)
        reuse = self.resume or "find-lr" not in self._requested
        if reuse and record is not None and record.get("signature") == signature:
            self.echo(f"beam {beam}: find-lr reused (lr_max={record['lr_max']:.3g}, "
                      f"lr_min={record['lr_min']:.3g})")
            return record
        self.echo(f"beam {beam}: learning-rate range test ({cfg.find_lr.steps} steps, "
                  f"{cfg.find_lr.lr_start:g} -> {cfg.find_lr.lr_end:g})")
        start = time.perf_counter()
        train = self.training_set()
        npix = int(train.manifest["beams"][beam]["npix"])
        self._seed_tf(cfg.seed)
        model = build_model(network, heads, npix, name=f"remap_{beam}")
        compile_model(model, heads, optimizer="adam", **self._compile_options())
        train_ds, _ = self._pipelines(train, "train", beam, heads, batch, cfg.seed)
        result = find_lr(model, train_ds.repeat(), lr_start=cfg.find_lr.lr_start,
                         lr_end=cfg.find_lr.lr_end, steps=cfg.find_lr.steps,
                         divergence=cfg.find_lr.divergence, rule=cfg.find_lr.rule)
        directory.mkdir(parents=True, exist_ok=True)
        result.plot(directory / "lr_finder.png")
        record = {"signature": signature, "lr_max": float(result.lr_max),
                  "lr_min": float(result.lr_min),
                  "lrs": [float(x) for x in np.asarray(result.lrs)],
                  "losses": [float(x) for x in np.asarray(result.losses)],
                  "seconds": time.perf_counter() - start}
        _write_json(record_path, record)
        self.echo(f"beam {beam}: suggested lr_max={record['lr_max']:.3g}, "
                  f"lr_min={record['lr_min']:.3g} (plot: {directory / 'lr_finder.png'})")
        import keras
        keras.backend.clear_session(free_memory=True)
        return record

    def pretrain_limits(self, beam, task=None, heads=None):
        """The pre-training (lr_max, lr_min): from ``[pretrain]`` or the range test ("auto")."""
        p = self.config.pretrain
        if p.lr_max == "auto":
            key = (beam, task)
            if key not in self._lr_cache:
                record = self.find_lr(beam, task, heads)
                self._lr_cache[key] = (record["lr_max"], record["lr_min"])
            return self._lr_cache[key]
        return p.lr_max, p.lr_min

    def _swa(self, flag):
        return bool(flag) and not self.config.ablations.no_swa

    def pretrain(self, beam, task=None, heads=None):
        """Pre-train (or reuse) the network of a beam; return (model path, stage signature)."""
        import keras

        from ..nn.model import build_model, compile_model
        from .loop import StageSchedule, train_stage

        heads = list(self.heads) if heads is None else heads
        cfg = self.config
        lr_max, lr_min = self.pretrain_limits(beam, task, heads)
        network = self._network(beam)
        train = self.training_set()
        signature = _digest({"network": network.to_dict(), "pretrain": cfg.to_dict()["pretrain"],
                             "lr": [lr_max, lr_min], "swa": self._swa(cfg.pretrain.swa),
                             "loss": self._compile_options(), "heads": [h.name for h in heads],
                             "seed": cfg.seed, "data": self._data_identity(train),
                             "split": cfg.data.validation_fraction,
                             "deterministic": cfg.deterministic})
        directory = self._stage_dir(beam, "pretrain", task)
        done = self._begin_stage(directory, signature, "pretrain")
        label = f"beam {beam}: pretrain" + (f" ({task})" if task else "")
        if done is not None:
            self.echo(f"{label}: reused {done}")
            return done, signature
        p = cfg.pretrain
        self.echo(f"{label}: {p.n_cycles} cycles x {p.epochs_per_cycle} epochs, lr "
                  f"{lr_max:.3g} -> {lr_min:.3g}, SWA {'on' if self._swa(p.swa) else 'off'}")
        start = time.perf_counter()
        npix = int(train.manifest["beams"][beam]["npix"])
        self._seed_tf(cfg.seed)
        name = f"remap_{beam}" + (f"_{task}" if task else "")
        model = build_model(network, heads, npix, name=name)
        compile_model(model, heads, optimizer="adam", **self._compile_options())
        train_ds, val_ds = self._pipelines(train, "train", beam, heads, p.batch_size, cfg.seed)
        schedule = StageSchedule.from_config(p, lr_max=lr_max, lr_min=lr_min,
                                             swa=self._swa(p.swa))
        result = train_stage(model, train_ds, val_ds, schedule,
                             checkpoint_dir=directory / "checkpoints", log_dir=directory / "logs",
                             seed=cfg.seed, verbose=self.verbose)
        seconds = time.perf_counter() - start
        self._end_stage(directory, signature, model,
                        {"lr_max": lr_max, "lr_min": lr_min, "seconds": seconds,
                         "history": _plain_history(result)})
        self.echo(f"{label}: done in {seconds:.1f} s")
        keras.backend.clear_session(free_memory=True)
        return directory / "model.keras", signature

    def finetune(self, beam, pretrained, pre_signature, task=None, heads=None):
        """Fine-tune (or reuse) a pre-trained network on the survey set; return the model.

        ``pretrained`` is the path of the pre-training stage's ``model.keras``
        and ``pre_signature`` that stage's signature (a changed pre-training
        invalidates the fine-tuning).
        """
        import keras

        from ..nn.model import compile_model
        from .finetune import finetune
        from .loop import StageSchedule

        heads = list(self.heads) if heads is None else heads
        cfg = self.config
        survey = self.survey_set()
        if survey is None:
            raise RunnerError("the finetune stage needs a survey set: add [data.survey] with "
                              "dataset = \"path\" or simulate = {set = \"dwarfs\", n = ...}")
        f = cfg.finetune
        base_max, base_min = self.pretrain_limits(beam, task, heads)
        lr_max = base_max if f.lr_max == "pretrain" else f.lr_max
        lr_min = base_min if f.lr_min == "pretrain" else f.lr_min
        signature = _digest({"pretrained": pre_signature, "finetune": cfg.to_dict()["finetune"],
                             "lr": [lr_max, lr_min], "swa": self._swa(f.swa),
                             "loss": self._compile_options(),
                             "data": self._data_identity(survey),
                             "split": cfg.data.survey.validation_fraction, "seed": cfg.seed})
        directory = self._stage_dir(beam, "finetune", task)
        done = self._begin_stage(directory, signature, "finetune")
        label = f"beam {beam}: finetune" + (f" ({task})" if task else "")
        if done is not None:
            self.echo(f"{label}: reused {done}")
            return keras.saving.load_model(done, compile=False)
        self.echo(f"{label}: {f.n_cycles} cycles x {f.epochs_per_cycle} epochs on "
                  f"{len(self.split('survey')[0])} survey spectra, layer-wise lr from "
                  f"{lr_max:.3g} -> {lr_min:.3g} (heads 1/10, modules 1/20, 1/30, ...)"
                  + (f", frozen: {', '.join(f.freeze)}" if f.freeze else ""))
        start = time.perf_counter()
        self._seed_tf(cfg.seed + 1)
        # always start from the stored pre-trained network (after seeding), so that a
        # fine-tuning redone in another process gives the same result
        model = keras.saving.load_model(pretrained, compile=False)
        compile_model(model, heads, optimizer="adam", **self._compile_options())
        train_ds, val_ds = self._pipelines(survey, "survey", beam, heads, f.batch_size,
                                           cfg.seed + 1)
        schedule = StageSchedule.from_config(f, lr_max=lr_max, lr_min=lr_min,
                                             swa=self._swa(f.swa))
        result = finetune(model, train_ds, val_ds, schedule, freeze=f.freeze,
                          checkpoint_dir=directory / "checkpoints", log_dir=directory / "logs",
                          seed=cfg.seed + 1, verbose=self.verbose)
        seconds = time.perf_counter() - start
        self._end_stage(directory, signature, model,
                        {"lr_max": lr_max, "lr_min": lr_min, "seconds": seconds,
                         "frozen": list(result.get("frozen", [])),
                         "multipliers": result.get("multipliers", {}),
                         "history": _plain_history(result)})
        self.echo(f"{label}: done in {seconds:.1f} s")
        return model

    def cross_validate(self, beam):
        """Run the ``[cv]`` cross-validation on a beam; write and return the table."""
        cfg = self.config
        c = cfg.cv
        archs = dict(c.architectures) or {"network": dict(cfg.network)}
        if c.lr_max == "pretrain" or c.lr_min == "pretrain":
            base = self.pretrain_limits(beam)
        lr_max = base[0] if c.lr_max == "pretrain" else c.lr_max
        lr_min = base[1] if c.lr_min == "pretrain" else c.lr_min
        path = self.out / "cv" / f"cv_{beam}.ecsv"
        signature = _digest({"cv": cfg.to_dict()["cv"], "archs": archs, "lr": [lr_max, lr_min],
                             "loss": self._compile_options(), "seed": cfg.seed,
                             "heads": [h.name for h in self.heads],
                             "data": self._data_identity(self.training_set())})
        if (self.resume or "cv" not in self._requested) and path.is_file():
            from astropy.table import Table
            table = Table.read(path)
            if table.meta.get("signature") == signature:
                self.echo(f"beam {beam}: cross-validation reused ({path})")
                return table
        self.echo(f"beam {beam}: {c.k}-fold cross-validation of {len(archs)} "
                  f"architecture(s), {c.epochs} epochs per fold")
        table = cross_validate(self.training_set(), beam, archs, c.k, epochs=c.epochs,
                               batch_size=c.batch_size, lr_max=lr_max, lr_min=lr_min,
                               seed=cfg.seed, heads=self.heads,
                               max_groups=c.max_label_points, progress=self.echo,
                               **{k: v for k, v in self._compile_options().items()})
        table.meta["signature"] = signature
        with atomic_path(path, prefix=".tmp-", suffix=".ecsv") as tmp:
            table.write(tmp, format="ascii.ecsv")
        for row in table:
            self.echo(f"  {row['architecture']}: val loss {row['mean_loss']:.4f} ± "
                      f"{row['std_loss']:.4f} ({row['n_params']} parameters)")
        self.echo(f"beam {beam}: best architecture {table.meta['best']!r} ({path})")
        return table

    # ------------------------------------------------------------------ assembly
    @staticmethod
    def combine(models, npix, name):
        """One model with the outputs of several single-task networks (same input).

        Each output passes through an ``Identity`` layer named like the output
        (``teff``, ``teff_embedding``, ...), so the combined model has the
        output names of a multi-task network.
        """
        import keras
        inputs = keras.Input((npix,), name="flux")
        outputs = {}
        for m in models:
            for key, tensor in m(inputs).items():
                if key in outputs:
                    raise RunnerError(f"two single-task networks both have output {key!r}")
                outputs[key] = keras.layers.Identity(name=key)(tensor)
        return keras.Model(inputs, outputs, name=name)

    def _final_model(self, beam, stages):
        """Train what is asked for a beam; return its final model (or None)."""
        import keras
        cfg = self.config
        want_ft = "finetune" in stages and not cfg.ablations.no_finetune \
            and self.survey_set() is not None
        models = []
        for task, heads in self._tasks():
            if "pretrain" in stages or want_ft:
                path, sig = self.pretrain(beam, task, heads)
                if want_ft:
                    model = self.finetune(beam, path, sig, task, heads)
                else:
                    model = keras.saving.load_model(path, compile=False)
                models.append(model)
        if not models:
            return None
        if len(models) == 1:
            return models[0]
        npix = int(self.training_set().manifest["beams"][beam]["npix"])
        combined = self.combine(models, npix, f"remap_{beam}")
        keras.backend.clear_session(free_memory=False)
        return combined

    def evaluate(self, beam, model):
        """Validation metrics of a beam's model on the synthetic and survey validation splits."""
        from ..nn.model import compile_model, expand_targets

        metrics = {}
        sets = [("train", self.training_set())]
        if self.survey_set() is not None:
            sets.append(("survey", self.survey_set()))
        compile_model(model, self.heads, optimizer="adam", **self._compile_options())
        for which, ds in sets:
            _, va = self.split(which)
            if va.size > _METRICS_MAX:
                va = np.sort(np.random.default_rng(self.config.seed).choice(
                    va, _METRICS_MAX, replace=False))
            flux, _, labels, unc = ds.read_arrays(va, beam)
            encoder = LabelEncoder(self.heads, ds.label_names)
            targets = expand_targets(encoder(labels, unc))
            loss, pred = _eager_loss_and_predictions(model, flux, targets)
            summary = encoder.decode(pred)
            entry = {"n": int(va.size), "loss": loss}
            for h in self.heads:
                if h.name not in ds.label_names:
                    continue
                true = labels[:, ds.label_names.index(h.name)]
                ok = np.isfinite(true)
                med = np.asarray(summary[f"{h.name}_median"].value)[ok]
                lo = np.asarray(summary[f"{h.name}_p16"].value)[ok]
                hi = np.asarray(summary[f"{h.name}_p84"].value)[ok]
                diff = med - true[ok]
                entry[h.name] = {
                    "unit": h.unit.to_string(), "n": int(ok.sum()),
                    "bias": float(np.mean(diff)) if ok.any() else None,
                    "scatter": float(np.std(diff)) if ok.any() else None,
                    "mad": float(mad_sigma(diff))
                    if ok.any() else None,
                    "coverage_68": float(np.mean((true[ok] >= lo) & (true[ok] <= hi)))
                    if ok.any() else None}
            metrics[which] = entry
        return metrics

    def embeddings(self, beam, model):
        """Embeddings of a seeded sample of the training split (for the artifact)."""
        n = self.config.artifact.embeddings_sample
        if n == 0:
            return None
        tr, _ = self.split("train")
        if tr.size > n:
            tr = np.sort(np.random.default_rng(self.config.seed + 7).choice(tr, n,
                                                                            replace=False))
        ds = self.training_set()
        flux, _, labels, _ = ds.read_arrays(tr, beam)
        return compute_embeddings(model, flux, labels, ds.label_names)

    def manifest(self, metrics, beams):
        """The artifact manifest (everything but what `save_model` adds itself)."""
        train = self.training_set()
        survey = self.survey_set()
        grids = {}
        try:
            sv = get_survey(train.survey)
        except RemapError:
            sv = None
        for beam in beams:
            b = train.manifest["beams"][beam]
            if sv is not None and beam in sv.beams and sv.beams[beam].npix == b["npix"]:
                grids[beam] = sv.beams[beam]
            else:
                grids[beam] = {"wave_min": b["wave_min"], "wave_max": b["wave_max"],
                               "sampling": (b["wave_max"] - b["wave_min"]) / (b["npix"] - 1),
                               "npix": b["npix"]}
        tconf = train.manifest.get("config", {})
        stages = {}
        for beam in beams:
            stages[beam] = {}
            for d in sorted(self.beam_dir(beam).glob("*/stage.json")):
                rec = _read_json(d) or {}
                stages[beam][d.parent.name] = {k: rec[k] for k in
                                               ("lr_max", "lr_min", "seconds", "frozen")
                                               if k in rec}
        return {"survey": train.survey, "beams": grids, "fitter": tconf.get("fitter"),
                # the physics version the set was built with joins the options, so that
                # the recorded options rebuild the same library under later defaults
                "library": {"name": tconf.get("library"),
                            "options": {**({"physics": tconf["library_physics"]}
                                           if tconf.get("library_physics") else {}),
                                        **tconf.get("library_options", {})}},
                "dataset": {"train": _dataset_summary(train),
                            "survey": None if survey is None else _dataset_summary(survey)},
                "training": {"config": self.config.to_dict(), "stages": stages,
                             "heads": [h.name for h in self.heads],
                             "single_task": self.config.ablations.single_task},
                "metrics": metrics}

    # ------------------------------------------------------------------ driver
    def run(self, stage="all", beams=None):
        """Run ``stage`` (one of `RUN_ORDER` or ``"all"``) for ``beams`` (default: all).

        Returns
        -------
        dict
            ``beams`` (per beam: metrics / cv best / lr suggestion), ``artifact``
            (path or None) and ``seconds``.
        """
        if stage != "all" and stage not in STAGES:
            raise RunnerError(f"unknown stage {stage!r}; choose one of "
                              f"{', '.join(STAGES)} or 'all'")
        beams = list(self.config.beams) if not beams else list(beams)
        for beam in beams:
            if beam not in self.config.beams:
                raise RunnerError(f"beam {beam!r} is not in the configuration's beams "
                                  f"{list(self.config.beams)}")
        if stage == "all":
            stages = [s for s in RUN_ORDER if s != "cv" or self.config.cv.enabled]
        else:
            stages = [stage]
        if stage == "finetune" and self.config.data.survey is None:
            raise RunnerError("the finetune stage needs a survey set: add [data.survey] with "
                              "dataset = \"path\" or simulate = {set = \"dwarfs\", n = ...}")
        if stage == "finetune" and self.config.ablations.no_finetune:
            raise RunnerError("the finetune stage was asked for but [ablations] no_finetune "
                              "is true")
        self._requested = tuple(stages)
        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / "config.json", self.config.to_dict())
        self.training_set()
        if "finetune" in stages:
            if self.survey_set() is None:
                self.echo("no [data.survey] in the configuration: fine-tuning is skipped")
            elif self.config.ablations.no_finetune:
                self.echo("[ablations] no_finetune: the pre-trained networks are shipped")
        summary = {"beams": {}, "artifact": None}
        finals = {}
        for beam in beams:
            info = summary["beams"].setdefault(beam, {})
            if "cv" in stages:
                info["cv_best"] = self.cross_validate(beam).meta["best"]
            if "find-lr" in stages:
                for task, heads in self._tasks():
                    rec = self.find_lr(beam, task, heads)
                    self._lr_cache[(beam, task)] = (rec["lr_max"], rec["lr_min"])
                    info.setdefault("find_lr", {})[task or "all"] = {
                        "lr_max": rec["lr_max"], "lr_min": rec["lr_min"]}
            model = self._final_model(beam, stages)
            if model is not None:
                metrics = self.evaluate(beam, model)
                _write_json(self.beam_dir(beam) / "metrics.json", metrics)
                info["metrics"] = metrics
                finals[beam] = model
                self._echo_metrics(beam, metrics)
        if finals:
            summary["artifact"] = str(self.write_artifact(finals))
        summary["seconds"] = time.perf_counter() - start
        return summary

    def _echo_metrics(self, beam, metrics):
        for which, entry in metrics.items():
            parts = []
            for h in self.heads:
                m = entry.get(h.name)
                if m and m["bias"] is not None:
                    parts.append(f"{h.name} bias {m['bias']:+.3g} scatter {m['scatter']:.3g}")
            self.echo(f"beam {beam}: {which} validation ({entry['n']}): loss "
                      f"{entry['loss'].get('loss', float('nan')):.4f}; " + "; ".join(parts))

    def templates(self, manifest, beams):
        """Template spectra of the training library for the artifact (None without one).

        Built with `remap.model.build_templates` from the library and fitter the
        training set records, at each beam's resolution: the radial-velocity
        templates and the in-painting mean of the fitting pipeline.
        """
        lib = manifest.get("library") or {}
        if not lib.get("name"):
            self.echo("artifact: the training set records no library; no templates stored")
            return None
        try:
            library = get_library(lib["name"], **_library_options(lib.get("options") or {}))
            survey = get_survey(manifest["survey"])
            fit = manifest.get("fitter")
            fitter = None
            if isinstance(fit, dict) and fit.get("name"):
                options = {k: v for k, v in fit.items() if k != "name"}
                fitter = get_continuum_fitter(fit["name"], **options)
        except (TypeError, ValueError, RemapError) as exc:
            self.echo(f"artifact: no templates stored ({exc})")
            return None
        return build_templates(library, survey, beams, fitter=fitter)

    def write_artifact(self, finals):
        """Save the artifact ``OUT/model`` with the given beams' networks and the others on disk.

        Beams of the configuration trained in an earlier run (their final
        stage model is on disk) are included too, so that ``--beam A`` then
        ``--beam B`` ends with an artifact holding both.
        """
        import keras

        models = dict(finals)
        for beam in self.config.beams:
            if beam in models:
                continue
            model = self._stored_final(beam)
            if model is not None:
                models[beam] = model
        metrics, embeddings = {}, {}
        for beam, model in models.items():
            stored = _read_json(self.beam_dir(beam) / "metrics.json")
            metrics[beam] = stored if stored is not None else self.evaluate(beam, model)
            emb = self.embeddings(beam, model)
            if emb is not None:
                embeddings[beam] = emb
        order = [b for b in self.config.beams if b in models]
        models = {b: models[b] for b in order}
        path = self.out / "model"
        manifest = self.manifest(metrics, order)
        save_model(path, models, manifest, embeddings=embeddings or None,
                   overwrite=True, heads=self.heads, templates=self.templates(manifest, order))
        self.echo(f"artifact: {path} (beams {', '.join(order)})")
        keras.backend.clear_session(free_memory=False)
        return path

    def _stored_final(self, beam):
        import keras
        models = []
        use_ft = not self.config.ablations.no_finetune and self.config.data.survey is not None
        for task, _ in self._tasks():
            found = None
            for stage in (("finetune", "pretrain") if use_ft else ("pretrain",)):
                d = self._stage_dir(beam, stage, task)
                state = _read_json(d / "stage.json")
                if state and state.get("complete") and (d / "model.keras").is_file():
                    found = d / "model.keras"
                    break
            if found is None:
                return None
            models.append(keras.saving.load_model(found, compile=False))
        if len(models) == 1:
            return models[0]
        npix = int(self.training_set().manifest["beams"][beam]["npix"])
        return self.combine(models, npix, f"remap_{beam}")


def run_training(config, out, *, stage="all", beams=None, resume=True, echo=None, verbose=0):
    """Run ``remap train``: see `TrainRunner` (``config`` may be a path or a `TrainConfig`)."""
    if not isinstance(config, TrainConfig):
        config = load_config(config)
    return TrainRunner(config, out, resume=resume, echo=echo, verbose=verbose).run(stage, beams)
