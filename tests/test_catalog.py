"""Catalogue fitting: reading files, fit_files, and fit_catalog on a real Dask LocalCluster.

One 2-worker LocalCluster (processes) serves the whole module: starting it and
loading the model in each worker costs most of this file's run time.
"""

import importlib
import os
import signal
import warnings

import astropy.units as u
import dask
import numpy as np
import pytest
from astropy.table import QTable
from specutils import Spectrum, SpectrumList

import remap
from remap.catalog import (CatalogError, SpectrumFileError, _part_key, expand_paths,
                           fit_catalog, fit_files, local_cluster, read_spectrum_file)
from remap.exceptions import MediumAssumedWarning
from remap.testing import write_mixed_catalogue

# three of the test files declare no wavelength medium; the warning is checked once
# (test_fit_files_warns_once_about_assumed_media) and ignored elsewhere
pytestmark = pytest.mark.filterwarnings("ignore::remap.exceptions.MediumAssumedWarning")

#: The readable files without a declared medium (tabular-fits and a remap-beam ECSV without it).
NO_MEDIUM = ["red.fits", "star_03_beamA.fits", "velocity.ecsv"]

GOOD = ["star_00.fits", "star_01.ecsv", "star_02.fits", "star_03_beamA.fits"]
BAD = {"corrupt.fits": "truncated", "empty.fits": "empty (0 bytes)",
       "notes.txt": "reader failed",
       "velocity.ecsv": "SpectrumError: spectrum: the spectral axis is a velocity",
       "red.fits": "NoCoverage: the spectrum covers 6000-6500"}


def make_catalogue(directory, seed=0):
    """Write a folder of good and bad spectrum files (see `remap.testing.write_mixed_catalogue`)."""
    return write_mixed_catalogue(directory, two_beam=GOOD[:3], beam_a=GOOD[3],
                                 corrupt="corrupt.fits", empty="empty.fits", text="notes.txt",
                                 velocity="velocity.ecsv", no_overlap="red.fits", seed=seed)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return make_catalogue(tmp_path_factory.mktemp("catalogue") / "spectra")


@pytest.fixture(scope="module")
def paths(catalogue):
    return expand_paths([catalogue])


@pytest.fixture(scope="module")
def reference(paths):
    """The single-process result, the yardstick of the distributed runs (and its warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MediumAssumedWarning)
        table = fit_files(paths, batch_size=3)
    table.meta["_warnings"] = [w for w in caught if w.category is MediumAssumedWarning]
    return table


@pytest.fixture(scope="module")
def client():
    """A real 2-process LocalCluster for the module (a died task is retried 3 times)."""
    distributed = pytest.importorskip("distributed")
    with dask.config.set({"distributed.scheduler.allowed-failures": 3}):
        cluster = local_cluster(2, threads_per_worker=1, host="127.0.0.1")
        c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def assert_same_rows(a, b):
    """Same files, statuses, errors and flags; the same numbers (to float round-off)."""
    assert a.colnames == b.colnames
    assert len(a) == len(b)
    for name in a.colnames:
        x, y = a[name], b[name]
        if isinstance(x, u.Quantity):
            assert x.unit == y.unit, name
            np.testing.assert_allclose(x.value, y.value, rtol=1e-6, atol=0, err_msg=name)
        elif np.asarray(x).dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, err_msg=name)
        else:
            assert list(np.asarray(x)) == list(np.asarray(y)), name


# ---------------------------------------------------------------------------- reading
def test_read_remap_beam_file_gives_one_spectrum_per_beam(catalogue):
    star = read_spectrum_file(catalogue / "star_00.fits")
    assert isinstance(star, SpectrumList)
    assert [s.meta["beam"] for s in star] == ["A", "B"]
    assert isinstance(read_spectrum_file(catalogue / "star_03_beamA.fits"), Spectrum)


@pytest.mark.parametrize("name, match", [
    ("corrupt.fits", "truncated"), ("empty.fits", r"empty \(0 bytes\)"),
    ("notes.txt", "reader failed")])
def test_read_unreadable_files_raise_specific_errors(catalogue, name, match):
    with pytest.raises(SpectrumFileError, match=match):
        read_spectrum_file(catalogue / name)


def test_read_missing_file_and_directory(catalogue):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_spectrum_file(catalogue / "nope.fits")
    with pytest.raises(SpectrumFileError, match="not a regular file"):
        read_spectrum_file(catalogue)


def test_read_errors_name_the_file_once(catalogue):
    """Also when a reader's own message names the file, and through a custom reader."""
    path = catalogue / "corrupt.fits"
    with pytest.raises(SpectrumFileError) as direct:
        read_spectrum_file(path)
    text = str(direct.value)
    assert text.count(str(path)) == 1 and "the remap-beam reader failed (BeamFileError: the " \
        in text
    with pytest.raises(SpectrumFileError) as custom:
        read_spectrum_file(path, format=read_spectrum_file)
    assert str(custom.value) == text


def test_read_with_a_custom_reader(catalogue):
    calls = []

    def reader(path):
        calls.append(path)
        return [Spectrum(flux=np.ones(50) * u.Jy, spectral_axis=np.arange(5000, 5050) * u.AA)]

    spec = read_spectrum_file(catalogue / "notes.txt", format=reader)
    assert isinstance(spec, Spectrum) and calls == [str(catalogue / "notes.txt")]
    with pytest.raises(SpectrumFileError, match="returned no spectrum"):
        read_spectrum_file(catalogue / "notes.txt", format=lambda p: None)


def test_expand_paths_sorts_directories_and_keeps_files(catalogue, tmp_path):
    (catalogue / ".hidden").write_text("x")
    try:
        got = expand_paths([tmp_path / "missing.fits", catalogue])
    finally:
        (catalogue / ".hidden").unlink()
    assert got[0] == tmp_path / "missing.fits"
    assert [p.name for p in got[1:]] == sorted(GOOD + list(BAD))


# ---------------------------------------------------------------------- single process
def test_fit_files_one_row_per_file_in_order(paths, reference):
    table = reference
    assert list(table["file"]) == [str(p) for p in paths]
    by_name = {os.path.basename(f): i for i, f in enumerate(table["file"])}
    for name in GOOD:
        row = table[by_name[name]]
        assert row["status"] in ("ok", "flagged"), (name, row["error"])
        assert row["error"] == ""
        for head in ("teff", "logg", "feh"):
            assert np.isfinite(row[head].value) and np.isfinite(row[f"{head}_p16"].value)
            assert row[f"{head}_p16"] <= row[head] <= row[f"{head}_p84"]
    # the beam-A-only star has only one beam's PMF: flagged, not an error
    row = table[by_name["star_03_beamA.fits"]]
    assert row["status"] == "flagged" and "MISSING_BEAM" in row["flag_names"]
    assert row["beams"] == "A"
    for name, match in BAD.items():
        row = table[by_name[name]]
        assert row["status"] == "error"
        assert match in row["error"], (name, row["error"])
        assert np.isnan(row["teff"].value) and np.isnan(row["logg_p84"].value)
    assert table.meta["n_error"] == len(BAD)
    assert table.meta["n_ok"] + table.meta["n_flagged"] == len(GOOD)
    assert table["teff"].unit == u.K


def test_fit_files_isolates_a_bad_spectrum_in_a_batch(paths, reference):
    """In-memory spectra in one batch: the invalid one is found, the others still fitted."""
    good = read_spectrum_file(paths[[p.name for p in paths].index("star_00.fits")])
    bad = Spectrum(flux=np.full(600, np.nan) * u.Jy,
                   spectral_axis=np.linspace(4900, 5200, 600) * u.AA)
    table = fit_files([good, bad, good], batch_size=3)
    assert list(table["status"]) == ["ok", "error", "ok"] or \
        list(table["status"]) == ["flagged", "error", "flagged"]
    assert table["error"][1].startswith("SpectrumError")
    star = str(paths[[p.name for p in paths].index("star_00.fits")])
    assert list(table["file"]) == [star, "spectrum[1]", star]  # read ones keep their file
    np.testing.assert_allclose(table["teff"][0].value, table["teff"][2].value)


def test_fit_files_fits_a_batch_with_bad_spectra_in_one_pass(paths, monkeypatch):
    """Bad spectra are BAD_INPUT rows of remap.fit_iter: one pass, no re-fit of the others."""
    # the module (remap.inference.pipeline is also the name of a function there)
    pipeline = importlib.import_module("remap.inference.pipeline")
    calls = []
    real = pipeline.fit_iter

    def counting(stars, *args, **kwargs):
        calls.append((len(stars), kwargs.get("errors")))
        return real(stars, *args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_iter", counting)
    good = read_spectrum_file(paths[[p.name for p in paths].index("star_02.fits")])
    short = Spectrum(flux=np.ones(3) * u.Jy, spectral_axis=[5000.0, 5001.0, 5002.0] * u.AA)
    velocity = Spectrum(flux=np.ones(600) * u.Jy,
                        spectral_axis=np.linspace(-300, 300, 600) * u.km / u.s)
    table = fit_files([short, good, velocity, good], batch_size=2)
    assert calls == [(4, "flag")]
    assert list(table["status"][[0, 2]]) == ["error", "error"]
    assert list(table["status"][[1, 3]]) != ["error", "error"]
    assert table["error"][0].startswith("SpectrumError: spectrum: ")
    assert "spectral axis is a velocity" in table["error"][2]
    assert "spectra[" not in "".join(table["error"])  # one row is one star
    np.testing.assert_allclose(table["teff"][1].value, table["teff"][3].value)


def test_fit_files_warns_once_about_assumed_media(reference):
    caught = reference.meta["_warnings"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("3 spectra declare no wavelength medium")
    assert all(name in message for name in NO_MEDIUM)
    assert "assumed air wavelengths (the medium of survey 'marvels')" in message
    assert reference.meta["n_medium_assumed"] == 3


def test_fit_files_medium_argument_declares_every_input(paths, reference):
    good = [p for p in paths if p.name in GOOD]
    with warnings.catch_warnings():
        warnings.simplefilter("error", MediumAssumedWarning)
        table = fit_files(good, batch_size=4, medium="air")
    assert table.meta["n_medium_assumed"] == 0
    expected = reference[[os.path.basename(f) in GOOD for f in reference["file"]]]
    np.testing.assert_allclose(table["teff"].value, expected["teff"].value, rtol=1e-6)
    with pytest.raises(ValueError, match="medium must be 'air' or 'vacuum'"):
        fit_files(good, medium="glass")


def test_part_key_depends_on_the_medium(paths):
    from remap.catalog import _make_items

    items = _make_items(paths[:2])
    keys = {_part_key(items, "m@1", None, None, medium) for medium in (None, "air", "vacuum")}
    assert len(keys) == 3


def test_fit_files_rejects_bad_batch_size(paths):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        fit_files(paths, batch_size=0)


# ------------------------------------------------------------------------------ Dask
def test_fit_catalog_equals_single_process(client, paths, reference):
    table = fit_catalog(paths, client=client, partition_size=3, batch_size=3)
    assert_same_rows(table, reference)
    assert table.meta["n_parts_reused"] == 0


def test_fit_catalog_accepts_spectra(client, paths, reference):
    spectra = [read_spectrum_file(p) for p in paths if p.name in GOOD]
    table = fit_catalog(spectra, client=client, partition_size=2)
    expected = reference[[os.path.basename(f) in GOOD for f in reference["file"]]]
    # spectra read from files keep the file's name (meta["file"])
    assert list(table["file"]) == [str(p) for p in paths if p.name in GOOD]
    for head in ("teff", "logg", "feh"):
        np.testing.assert_allclose(table[head].value, expected[head].value, rtol=1e-6)


def test_fit_catalog_resumes_from_parts(client, paths, reference, tmp_path):
    parts = tmp_path / "parts"
    first = fit_catalog(paths, client=client, partition_size=4, output=parts)
    files = sorted(parts.iterdir())
    assert [f.name for f in files] == ["part-00000.ecsv", "part-00001.ecsv", "part-00002.ecsv"]
    assert_same_rows(first, reference)
    stamps = {f.name: f.stat().st_mtime_ns for f in files}

    again = fit_catalog(paths, client=client, partition_size=4, output=parts)
    assert again.meta["n_parts_reused"] == 3
    assert {f.name: f.stat().st_mtime_ns for f in parts.iterdir()} == stamps
    assert_same_rows(again, reference)

    # a lost part is the only one computed again
    (parts / "part-00001.ecsv").unlink()
    third = fit_catalog(paths, client=client, partition_size=4, output=parts)
    assert third.meta["n_parts_reused"] == 2
    now = {f.name: f.stat().st_mtime_ns for f in parts.iterdir()}
    assert now["part-00000.ecsv"] == stamps["part-00000.ecsv"]
    assert now["part-00002.ecsv"] == stamps["part-00002.ecsv"]
    assert (parts / "part-00001.ecsv").is_file()
    assert_same_rows(third, reference)
    # no temporary files are left behind
    assert not [f for f in parts.iterdir() if f.name.startswith(".")]


def test_fit_catalog_recomputes_parts_of_other_inputs(client, paths, tmp_path):
    parts = tmp_path / "parts"
    fit_catalog(paths[:4], client=client, partition_size=2, output=parts)
    table = fit_catalog(paths[4:8], client=client, partition_size=2, output=parts)
    assert table.meta["n_parts_reused"] == 0
    assert list(table["file"]) == [str(p) for p in paths[4:8]]
    assert QTable.read(parts / "part-00000.ecsv")["file"][0] == str(paths[4])


def test_fit_catalog_argument_errors(client, paths):
    with pytest.raises(CatalogError, match="give client= alone"):
        fit_catalog(paths, client=client, n_workers=2)
    with pytest.raises(ValueError, match="partition_size must be an integer >= 1"):
        fit_catalog(paths, client=client, partition_size=0)
    with pytest.raises(ValueError, match="part_format must be one of"):
        fit_catalog(paths, client=client, part_format="csv")


@pytest.mark.slow
def test_killed_worker_loses_no_rows(client, paths, reference, tmp_path):
    """The first attempt to read one file kills its worker; Dask reruns the task elsewhere."""
    marker = tmp_path / "killed-once"
    victim = str([p for p in paths if p.name == "star_01.ecsv"][0])

    def reader(path):
        if path == victim and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return read_spectrum_file(path)

    parts = tmp_path / "parts"
    table = fit_catalog(paths, client=client, partition_size=3, output=parts, format=reader)
    assert marker.exists()
    assert_same_rows(table, reference)
    assert len(list(parts.glob("part-*.ecsv"))) == 3


def test_dataset_build_on_dask_equals_local_build(client, tmp_path):
    """``build_synthetic(client=...)`` writes the same data set as the in-process build."""
    from remap.datasets import Dataset, build_synthetic, draw_labels

    library = remap.get_library("linelist")
    survey = remap.get_survey("marvels")
    labels = draw_labels(library.domain, 3, seed=4)
    options = dict(seed=4, shard_size=2, resolutions=[11000], noise_levels=[0.02], draws=1,
                   fitter="chebyshev")
    local = build_synthetic(tmp_path / "local", library, survey, labels, **options)
    remote = build_synthetic(tmp_path / "dask", library, survey, labels, client=client,
                             **options)
    assert local["n_samples"] == remote["n_samples"] == 3
    a, b = Dataset(tmp_path / "local"), Dataset(tmp_path / "dask")
    assert a.complete and b.complete
    for beam in a.beams:
        fa, ma, la, _ = a.read_arrays(range(3), beam)
        fb, mb, lb, _ = b.read_arrays(range(3), beam)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(la, lb)
    assert list(a.labels["seed"]) == list(b.labels["seed"])
    # resuming on Dask skips the finished shards
    again = build_synthetic(tmp_path / "dask", library, survey, labels, client=client,
                            **options)
    assert again["shards_written"] == 0 and again["shards_skipped"] == 2


@pytest.mark.slow
def test_dataset_build_cli_with_scheduler(client, tmp_path, capsys):
    """``remap dataset build --scheduler ADDRESS`` gives the same shards as a local build."""
    from remap.cli.app import main
    from remap.datasets import Dataset

    common = ["dataset", "build", "--library", "linelist", "--n", "2", "--shard-size", "1",
              "--seed", "3", "--fitter", "chebyshev", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "local")]) in (0, None)
    assert main(common + ["--out", str(tmp_path / "dask"), "--scheduler",
                          client.scheduler.address]) in (0, None)
    assert "shards: 2 (2 written, 0 already complete)" in capsys.readouterr().out
    a, b = Dataset(tmp_path / "local"), Dataset(tmp_path / "dask")
    assert len(a) == len(b) == 90
    for beam in a.beams:
        np.testing.assert_array_equal(a.read_arrays(range(90), beam)[0],
                                      b.read_arrays(range(90), beam)[0])
    code = main(common + ["--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:9",
                          "--workers", "2"])
    assert code == 2
    assert "not both" in capsys.readouterr().err


def test_fit_catalog_missing_model_fails_with_the_loader_error(client, paths, tmp_path):
    with pytest.raises(CatalogError, match="no such artifact directory"):
        fit_catalog(paths[:2], model=tmp_path / "no-model", client=client, partition_size=1,
                    retries=0)
