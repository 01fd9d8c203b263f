"""``remap library``: commands that manage synthetic spectral libraries on disk."""

from __future__ import annotations

import click

from ..libraries.fetch import default_cache_dir, fetch_phoenix

__all__ = ["library", "fetch", "calibrate", "parse_range"]


def parse_range(text, what="value"):
    """A ``LOW:HIGH`` range or a single value, as floats.

    Parameters
    ----------
    text : str
        e.g. ``"3000:7000"``, ``"-2:1"`` or ``"0"``.
    what : str
        Name used in the error message.

    Returns
    -------
    value : float or (float, float)

    Raises
    ------
    ValueError
        ``text`` is neither a number nor two numbers separated by ``:``.
    """
    pieces = str(text).split(":")
    try:
        if len(pieces) == 1:
            return float(pieces[0])
        if len(pieces) == 2:
            lo, hi = float(pieces[0]), float(pieces[1])
            if lo > hi:
                raise ValueError
            return lo, hi
    except ValueError:
        pass
    raise ValueError(f"{what} must be a number or LOW:HIGH with LOW <= HIGH (e.g. 3000:7000); "
                     f"received: {text!r}")


class _RangeType(click.ParamType):
    name = "LOW:HIGH"

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, float, int)):
            return value
        try:
            return parse_range(value, f"--{param.name}" if param is not None else "value")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


_RANGE = _RangeType()


@click.group("library")
def library():
    """Manage synthetic spectral libraries (download model grids)."""


@library.command("fetch")
@click.argument("name", type=click.Choice(["phoenix"]))
@click.option("--teff", type=_RANGE, default="3000:7000", show_default=True,
              help="T_eff range in K (LOW:HIGH or one value).")
@click.option("--logg", type=_RANGE, default="1.0:5.5", show_default=True,
              help="log g range (LOW:HIGH or one value).")
@click.option("--feh", type=_RANGE, default="-2:1", show_default=True,
              help="[Fe/H] range in dex (LOW:HIGH or one value).")
@click.option("--alpha", type=_RANGE, default="0", show_default=True,
              help="[alpha/Fe] in dex (one value or LOW:HIGH).")
@click.option("--dest", type=click.Path(file_okay=False, writable=True), default=None,
              help="Destination folder [default: the user cache folder, remap/phoenix].")
@click.option("--base-url", envvar="REMAP_PHOENIX_URL", default=None,
              help="URL of the HiResFITS folder [env REMAP_PHOENIX_URL; default: Göttingen].")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Parallel downloads.")
@click.option("--retries", type=click.IntRange(min=0), default=4, show_default=True,
              help="Retries of a dropped or failed download.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Network timeout per request, in seconds.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show a progress bar.")
def fetch(name, teff, logg, feh, alpha, dest, base_url, workers, retries, timeout, progress):
    """Download a subset of the NAME grid (phoenix: PHOENIX-ACES-AGSS-COND-2011 HiRes).

    Files already complete are skipped and interrupted downloads resume, so the
    command can simply be run again.  Exits with status 1 when any file failed.
    """
    try:
        report = fetch_phoenix(teff=teff, logg=logg, feh=feh, alpha=alpha, dest=dest,
                               base_url=base_url, workers=workers, progress=progress,
                               retries=retries, timeout=timeout)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(report.summary())
    where = report.dest if dest is not None else default_cache_dir()
    if not report.ok:
        click.echo(f"{len(report.failed)} file(s) failed; run the command again to retry "
                   "(complete files are skipped, partial ones resume).", err=True)
        click.get_current_context().exit(1)
    click.echo(f'Read it with remap.get_library("{name}", directory="{where}").')


@library.command("calibrate")
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Two-column text file: air wavelength (Å) and normalized flux of the "
                   "reference star (e.g. a solar spectrum).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True),
              default="linelist_calibrated.csv", show_default=True,
              help="Calibration CSV to write; use it with "
                   "LineListLibrary(linelist=PATH).")
@click.option("--holdout", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hold out every k-th window (0: fit all) and report the held-out rms.")
@click.option("--window", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Width of the hold-out windows, Å.")
@click.option("--labels", nargs=3, type=float, default=(5772.0, 4.44, 0.0),
              show_default=True, help="T_eff, log g, [Fe/H] of the reference.")
@click.option("--prior-sigma", type=click.FloatRange(min=0, min_open=True), default=0.3,
              show_default=True, help="Prior width of each line's log gf correction, dex.")
@click.option("--iterations", type=click.IntRange(min=1), default=12, show_default=True,
              help="Gauss-Newton iterations.")
@click.option("--physics", default=None, metavar="VERSION",
              help="Physics version of the linelist library whose line data are fitted "
                   "(remap.libraries.linelist.PHYSICS; default the newest).")
def calibrate(reference, output, holdout, window, labels, prior_sigma, iterations, physics):
    """Fit the linelist library's log gf and damping to a REFERENCE spectrum.

    Redoes the astrophysical calibration shipped with remap
    (``remap.libraries.calibrate.calibrate_linelist``; method in its docstring
    and on the training-data page) and writes the calibration CSV.
    """
    # imported on use: the line-list library loads its atomic data; `remap --help` stays fast
    from ..libraries.calibrate import calibrate_linelist, read_reference

    try:
        wave, flux = read_reference(reference)
        result = calibrate_linelist(wave, flux, labels=tuple(labels) + (0.0,),
                                    holdout=holdout, window=window, prior_sigma=prior_sigma,
                                    iterations=iterations,
                                    **({} if physics is None else {"physics": physics}))
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc
    result.write(output)
    click.echo(result.summary())
    click.echo(f"wrote {output}; use it with LineListLibrary(linelist={output!r})")
