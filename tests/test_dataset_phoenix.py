"""`remap dataset build` from a directory of Göttingen-format PHOENIX files (made here)."""

import numpy as np
from astropy.io import fits
from click.testing import CliRunner

from remap.cli.app import cli
from remap.datasets import Dataset
from remap.libraries import phoenix

# vacuum wavelengths at 0.02 Å (R ~ 250,000) covering both MARVELS beams with margin
WAVE = np.arange(4820.0, 5780.0, 0.02)
POINTS = [(5700, 4.5, 0.0, 0.0), (5800, 4.5, 0.0, 0.0), (5800, 4.0, -0.5, 0.0)]


def _flux(teff, logg, feh):
    """Smooth blackbody-like slope with a few labelled absorption lines (erg/s/cm2/cm)."""
    cont = 1e14 * (WAVE / 5000.0) ** (-4 + teff / 2000.0)
    depth = 0.4 * 10 ** (0.5 * feh)
    lines = np.ones_like(WAVE)
    for centre in (4890.0, 5015.0, 5172.7, 5183.6, 5300.0, 5455.0, 5600.0, 5700.0):
        width = 0.08 * (1 + 0.2 * (logg - 4.0))
        lines *= 1 - depth * np.exp(-0.5 * ((WAVE - centre) / width) ** 2)
    return (cont * lines).astype(">f4")


def _make_grid(root):
    root.mkdir()
    fits.PrimaryHDU(WAVE.astype(">f8")).writeto(root / phoenix.WAVE_FILE_NAME)
    for teff, logg, feh, alpha in POINTS:
        path = root / phoenix.grid_relative_path(teff, logg, feh, alpha)
        path.parent.mkdir(parents=True, exist_ok=True)
        hdu = fits.PrimaryHDU(_flux(teff, logg, feh))
        hdu.header.update(PHXTEFF=float(teff), PHXLOGG=float(logg), PHXM_H=float(feh),
                          PHXALPHA=float(alpha), BUNIT="erg/s/cm^2/cm")
        hdu.writeto(path)
    return root


def test_dataset_build_from_phoenix_directory(tmp_path):
    grid = _make_grid(tmp_path / "phoenix")
    out = tmp_path / "ds"
    result = CliRunner().invoke(cli, [
        "dataset", "build", "--library", "phoenix", "--library-option", f"directory={grid}",
        "--survey", "marvels", "--grid", "--out", str(out), "--seed", "3",
        "--shard-size", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    ds = Dataset(out)
    # 3 grid points x 3 resolutions x 5 noise levels x 3 draws
    assert len(ds) == 3 * 45
    labels = ds.labels
    assert sorted(set(np.round(np.asarray(labels["teff"], dtype=float)))) == [5700, 5800]
    assert sorted(ds.beams) == ["A", "B"]
    for beam in ds.beams:
        flux, mask, labs, unc = ds.read_arrays(np.arange(len(ds)), beam)
        assert flux.shape == (len(ds), ds.manifest["beams"][beam]["npix"])
        assert np.all(np.isfinite(flux))
        assert np.all(np.isfinite(labs[:, :3]))
        # continuum-normalized: the continuum level sits near 1
        assert 0.9 < np.median(np.percentile(flux, 90, axis=1)) < 1.1
