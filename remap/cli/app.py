"""The ``remap`` command line (one console script with subcommands, built on click)."""

from __future__ import annotations

import sys
from pathlib import Path

import astropy.units as u
import click
import numpy as np

from .. import __version__
from .._util.fs import atomic_path, check_output, output_lock
from ..exceptions import OutputError, RemapError
from ..plugins import KINDS, plugin_infos

__all__ = ["main", "cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remap")
def cli():
    """remap: probabilistic stellar parameters (T_eff, log g, [Fe/H]) from spectra."""


@cli.command("plugins")
@click.option("--kind", type=click.Choice(sorted(KINDS)), default=None,
              help="Show only plugins of this kind.")
def plugins_cmd(kind):
    """List every registered plugin by kind, with the distribution it comes from."""
    titles = {"survey": "Surveys", "library": "Synthetic libraries",
              "continuum": "Continuum fitters", "head": "Network heads"}
    for k in KINDS:
        if kind is not None and k != kind:
            continue
        infos = plugin_infos(k)
        click.echo(f"{titles[k]} ({KINDS[k]}):")
        if not infos:
            click.echo("  (none)")
        width = max((len(i.name) for i in infos), default=0)
        for info in infos:
            doc = _describe(info.obj)
            click.echo(f"  {info.name:<{width}}  {info.source}  [plugin {info.plugin}]"
                       + (f"  {doc}" if doc else ""))
        click.echo("")


def _describe(obj):
    """One line describing a plugin object: ``description``, ``label`` or a class docstring."""
    import inspect
    for attr in ("description", "label"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    if inspect.isclass(obj) and obj.__doc__:
        return obj.__doc__.strip().split("\n")[0]
    return ""


@cli.command("normalize")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "outdir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the tables and plots (created if needed).")
@click.option("--example", is_flag=True,
              help="Also process the bundled (simulated) example spectrum.")
@click.option("--survey", default="marvels", show_default=True,
              help="Survey whose beams the spectra are split into.")
@click.option("--fitter", default="algorithm1", show_default=True,
              help="Continuum fitter (see 'remap plugins --kind continuum').")
@click.option("--mode", type=click.Choice(["fast", "faithful"]), default=None,
              help="Mode of the algorithm1 fitter [default: the fitter's, fast].")
@click.option("--format", "fmt", default=None,
              help="Reader format (e.g. remap-beam, tabular-fits, wcs1d-fits, ECSV, "
                   "remap-fits1d, remap-table); identified from the file by default.")
@click.option("--medium", type=click.Choice(["air", "vacuum"]), default=None,
              help="Wavelength medium of the inputs [default: the file's, else the survey's].")
@click.option("--no-spikes", "keep_spikes", is_flag=True,
              help="Do not remove spikes (cosmic rays, interferometric features).")
@click.option("--overwrite", is_flag=True,
              help="Replace existing OUTPUT/<name>_normalized.* files.")
def normalize_cmd(files, outdir, example, survey, fitter, mode, fmt, medium, keep_spikes,
                  overwrite):
    """Continuum-normalize spectra beam by beam; write a table and a plot per file.

    Each FILE is read with specutils, validated, cleaned of spikes, split into
    the survey's beams and normalized with the continuum fitter.  For every
    input, OUTPUT/<name>_normalized.ecsv holds the wavelength, beam, flux,
    continuum, normalized flux, uncertainties and mask, and
    OUTPUT/<name>_normalized.png shows flux and continuum (top) and the
    normalized flux (bottom) per beam.  A file that fails is reported and the
    others are still processed; the exit status is 1 if any failed.

    Files are read by remap.read_spectrum (see 'remap fit --help').  No
    output may be one of the inputs; existing outputs are only replaced with
    --overwrite, and OUTPUT is locked (OUTPUT/.remap-normalize.lock) while the
    command runs.
    """
    from ..examples import example_path
    from ..plugins import get_continuum_fitter, get_survey

    inputs = list(files)
    if example:
        inputs.insert(0, Path(str(example_path())))
    if not inputs:
        raise click.UsageError("give at least one FILE, or --example to use the bundled "
                               "example spectrum")
    try:
        survey_obj = get_survey(survey)
    except RemapError as exc:
        raise click.BadParameter(str(exc), param_hint="--survey") from None
    options = {} if mode is None else {"mode": mode}
    try:
        fitter_obj = get_continuum_fitter(fitter, **options)
    except RemapError as exc:
        raise click.BadParameter(str(exc), param_hint="--fitter") from None
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"the {fitter!r} fitter does not accept {options}: {exc}",
                                 param_hint="--mode") from None
    stems = _unique_stems(inputs)
    targets = [outdir / f"{stem}_normalized{ext}" for stem in stems for ext in (".ecsv", ".png")]
    try:
        for target in targets:
            check_output(target, inputs, overwrite=overwrite, what="output")
        outdir.mkdir(parents=True, exist_ok=True)
        with output_lock(outdir / "remap-normalize"):
            rows, failures = _normalize_all(inputs, stems, outdir, fmt, medium, survey_obj,
                                            fitter_obj, keep_spikes)
    except OutputError as exc:
        raise click.ClickException(str(exc)) from None
    _print_summary(rows, failures)
    if failures:
        raise click.exceptions.Exit(1)


def _normalize_all(inputs, stems, outdir, fmt, medium, survey_obj, fitter_obj, keep_spikes):
    """Normalize every input; (summary rows, failures)."""
    from tqdm import tqdm

    rows, failures, assumed = [], [], []
    bar = tqdm(inputs, desc="normalize", unit="file", disable=len(inputs) < 2 or None,
               file=sys.stderr)
    for path, stem in zip(bar, stems):
        try:
            beams = _normalize_file(path, fmt, survey_obj, fitter_obj,
                                    remove_spikes=not keep_spikes, medium=medium,
                                    assumed=assumed)
            table = _beams_table(beams, path, survey_obj, fitter_obj, not keep_spikes)
            ecsv = outdir / f"{stem}_normalized.ecsv"
            png = outdir / f"{stem}_normalized.png"
            _atomic_write(ecsv, lambda tmp: table.write(tmp, format="ascii.ecsv"))
            _atomic_write(png, lambda tmp: _plot_beams(beams, path.name, tmp))
        except Exception as exc:  # report, and go on with the other files
            failures.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        for name, (part, norm, spikes) in beams.items():
            good = ~np.asarray(part.mask, dtype=bool)
            rows.append((path.name, name, len(part.spectral_axis),
                         "-" if keep_spikes else int(np.count_nonzero(spikes)),
                         float(np.median(u.Quantity(norm.flux).value[good])), ecsv.name))
    bar.close()
    if assumed:
        import warnings

        from ..spectra.medium import warn_medium_assumed

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warn_medium_assumed(assumed, survey_obj.wavelength_medium,
                                f"the medium of survey {survey_obj.name!r}")
        for w in caught:
            click.echo(f"remap normalize: warning: {w.message}", err=True)
    return rows, failures


def _unique_stems(paths):
    """Output name stems, one per input; repeated file names get ``-2``, ``-3`` ... suffixes."""
    seen = {}
    stems = []
    for path in paths:
        stem = Path(path.name).stem or "spectrum"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def _read_spectra(path, fmt, medium=None):
    """Every spectrum of a file (read by :func:`remap.read_spectrum`), as a list."""
    from specutils import SpectrumList

    from ..spectra.readers import read_spectrum

    result = read_spectrum(path, format=fmt, medium=medium)
    return list(result) if isinstance(result, SpectrumList) else [result]


def _normalize_file(path, fmt, survey, fitter, *, remove_spikes=True, medium=None,
                    assumed=None):
    """Read, clean, split and normalize one file.

    ``assumed`` (a list) gets the file's name when it declares no wavelength
    medium (the survey's is then assumed).

    Returns
    -------
    beams : dict
        ``{beam: (part, normalized, spikes)}``: the cleaned beam spectrum, the
        result of :func:`remap.normalize` and a boolean array of the pixels
        flagged as spikes.
    """
    from ..continuum import normalize
    from ..spectra.validation import prepare

    parts = {}
    spectra = _read_spectra(path, fmt, medium)
    if assumed is not None and any("wavelength_medium" not in (s.meta or {}) for s in spectra):
        assumed.append(path.name)
    for i, raw in enumerate(spectra):
        label = path.name if len(spectra) == 1 else f"{path.name}[{i}]"
        spec = prepare(raw, name=label)
        if spec.flux.ndim != 1:
            raise ValueError(f"{label} holds {spec.flux.shape[0]} spectra in one 2-D flux "
                             "array; 'remap normalize' expects one star per file (split the "
                             "batch first)")
        spikes = np.zeros(spec.flux.shape, dtype=bool)
        if remove_spikes:
            cleaned = survey.remove_spikes(spec, name=label)
            spikes = np.asarray(cleaned.mask, dtype=bool) & ~np.asarray(spec.mask, dtype=bool)
            spec = cleaned
        wave = spec.spectral_axis.to_value(u.AA)
        for name, part in survey.split(spec, name=label).items():
            if name in parts:
                raise ValueError(f"{label}: beam {name!r} of survey {survey.name!r} is "
                                 "covered by more than one spectrum in this file; expected "
                                 "at most one spectrum per beam")
            lo, hi = part.spectral_axis.to_value(u.AA)[[0, -1]]
            inside = (wave >= lo) & (wave <= hi)
            part_spikes = spikes[inside] if inside.sum() == len(part.spectral_axis) else \
                np.zeros(len(part.spectral_axis), dtype=bool)
            parts[name] = (part, part_spikes)
    return {name: (part, normalize(part, fitter=fitter), spikes)
            for name, (part, spikes) in parts.items()}


def _continuum_of(normalized, part):
    """The continuum (Quantity in the flux unit of ``part``) recorded by :func:`remap.normalize`."""
    cont = normalized.meta.get("continuum")
    if cont is None:
        raise ValueError("the continuum fitter did not record meta['continuum']")
    return u.Quantity(cont, part.flux.unit)


def _beams_table(beams, path, survey, fitter, spikes_removed):
    """One `~astropy.table.QTable` with every pixel of every beam of one input."""
    from astropy.table import QTable, vstack

    from .. import __version__

    tables = []
    for name, (part, norm, spikes) in beams.items():
        n = len(part.spectral_axis)
        columns = {
            "wavelength": u.Quantity(part.spectral_axis.to_value(u.AA), u.AA),
            "beam": np.full(n, name),
            "flux": u.Quantity(part.flux),
            "continuum": _continuum_of(norm, part),
            "normalized_flux": u.Quantity(norm.flux).value,
        }
        if part.uncertainty is not None:
            columns["uncertainty"] = part.uncertainty.quantity.to(part.flux.unit)
        if norm.uncertainty is not None:
            columns["normalized_uncertainty"] = np.asarray(norm.uncertainty.array, dtype=float)
        columns["mask"] = np.asarray(part.mask, dtype=bool)
        columns["spike"] = np.asarray(spikes, dtype=bool)
        tables.append(QTable(columns))
    table = vstack(tables, metadata_conflicts="silent")
    table["wavelength"].info.description = f"wavelength ({survey.wavelength_medium}), Å"
    table["normalized_flux"].info.description = "flux / continuum"
    table["mask"].info.description = "True = bad pixel (input mask, non-finite or spike)"
    table["spike"].info.description = "True = flagged as a spike and interpolated over"
    table.meta.update({
        "source": path.name,
        "survey": survey.name,
        "beams": list(beams),
        "continuum_fitter": fitter.name,
        "continuum_config": {k: v for k, v in fitter.get_config().items()
                             if isinstance(v, (str, int, float, bool, type(None)))},
        "spikes_removed": bool(spikes_removed),
        "remap_version": __version__,
    })
    return table


def _plot_beams(beams, title, target):
    """Save a PNG: flux and continuum (top) and normalized flux (bottom), one column per beam."""
    # a bare Figure (no pyplot) renders PNG with the Agg canvas, needs no display
    # and leaves the backend of the calling process alone
    from matplotlib.figure import Figure

    ncol = len(beams)
    fig = Figure(figsize=(6.0 * ncol, 6.0), layout="constrained")
    axes = fig.subplots(2, ncol, sharex="col", squeeze=False)
    for col, (name, (part, norm, spikes)) in enumerate(beams.items()):
        wave = part.spectral_axis.to_value(u.AA)
        flux = u.Quantity(part.flux)
        top, bottom = axes[0, col], axes[1, col]
        top.plot(wave, flux.value, lw=0.5, color="0.3", label="flux")
        top.plot(wave, _continuum_of(norm, part).value, lw=1.2, color="C3", label="continuum")
        if np.any(spikes):
            top.plot(wave[spikes], flux.value[spikes], "x", color="C1", ms=5,
                     label="spike (interpolated)")
        top.set_title(f"beam {name}")
        top.legend(loc="lower right", fontsize="small")
        bottom.plot(wave, u.Quantity(norm.flux).value, lw=0.5, color="C0")
        bottom.axhline(1.0, color="C3", lw=0.8, ls="--")
        bottom.set_xlabel("wavelength [Å]")
        if col == 0:
            top.set_ylabel(f"flux [{flux.unit.to_string()}]" if flux.unit != u.one else "flux")
            bottom.set_ylabel("normalized flux")
    fig.suptitle(title)
    fig.savefig(target, format="png", dpi=100)


def _atomic_write(path, write):
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it into place."""
    with atomic_path(path, mkdir=False) as tmp:
        write(tmp)


def _print_summary(rows, failures):
    """Print one line per normalized beam and one per failed file."""
    header = ("file", "beam", "pixels", "spikes", "median norm.", "table")
    body = [(f, b, str(n), str(k), f"{m:.4f}", t) for f, b, n, k, m, t in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    if body:
        for r in [header] + body:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    done = len({r[0] for r in rows})
    click.echo(f"{done} file(s) normalized, {len(failures)} failed")
    for path, message in failures:
        click.echo(f"remap normalize: error: {path}: {message}", err=True)


def main(argv=None):
    """Entry point of the ``remap`` console script."""
    try:
        return cli.main(args=argv, prog_name="remap", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except RemapError as exc:
        click.echo(f"remap: error: {exc}", err=True)
        return 2


from .library import library as _library_group  # noqa: E402
cli.add_command(_library_group)


from .dataset import dataset as _dataset_group  # noqa: E402
cli.add_command(_dataset_group)


from .train import train as _train_command  # noqa: E402
cli.add_command(_train_command)


from .evaluate import evaluate_cmd as _evaluate_command  # noqa: E402
cli.add_command(_evaluate_command)


from .evaluate import embed_cmd as _embed_command  # noqa: E402
cli.add_command(_embed_command)


from .fit import fit_cmd as _fit_command  # noqa: E402
cli.add_command(_fit_command)

from .demo import demo as _demo_command  # noqa: E402
cli.add_command(_demo_command)

from .model import model as _model_group  # noqa: E402
cli.add_command(_model_group)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
