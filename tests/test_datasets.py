"""Tests of the on-disk data sets (remap.datasets)."""

import json

import astropy.units as u
import numpy as np
import pytest

from remap.datasets import (FORMAT_VERSION, MANIFEST_NAME, Dataset, DatasetError,
                            DatasetWriter, sha256_of, shard_name)

GRIDS = {"A": (4850.0 + 0.1 * np.arange(50)) * u.AA,
         "B": (5280.0 + 0.1 * np.arange(40)) * u.AA}
SIZES = (10, 10, 5)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    n = sum(SIZES)
    labels = np.column_stack([rng.uniform(4000, 6000, n), rng.uniform(1, 5, n),
                              rng.uniform(-2, 1, n)])
    labels[3, 2] = np.nan                               # an unknown label
    return {"flux": {b: rng.normal(1, 0.01, (n, g.size)).astype(np.float32)
                     for b, g in GRIDS.items()},
            "mask": {b: rng.random((n, g.size)) < 0.05 for b, g in GRIDS.items()},
            "labels": labels, "unc": np.abs(rng.normal(0, 0.1, (n, 3))),
            "resolution": rng.choice([10_000.0, 11_000.0, 12_000.0], n),
            "seed": rng.integers(0, 2 ** 63, n, dtype=np.uint64),
            "source": np.array([f"star{i}" for i in range(n)])}


def writer_for(directory, **kw):
    return DatasetWriter(directory, survey="marvels", grids=GRIDS,
                         label_names=("teff", "logg", "feh"), label_units=("K", "dex", "dex"),
                         wavelength_medium="air", config={"seed": 1, "library": "test"}, **kw)


def write_shard(writer, index, data):
    start = sum(SIZES[:index])
    stop = start + SIZES[index]
    rows = slice(start, stop)
    with writer.shard(index, SIZES[index]) as shard:
        # two appends, to exercise block-wise filling
        for part in (slice(start, start + 3), slice(start + 3, stop)):
            shard.append(flux={b: f[part] for b, f in data["flux"].items()},
                         mask={b: m[part] for b, m in data["mask"].items()},
                         labels=data["labels"][part], label_uncertainty=data["unc"][part],
                         metadata={"resolution": data["resolution"][part],
                                   "seed": data["seed"][part],
                                   "source": data["source"][part]})
    return rows


@pytest.fixture
def built(tmp_path):
    data = make_data()
    writer = writer_for(tmp_path / "set")
    for k in range(len(SIZES)):
        write_shard(writer, k, data)
    writer.finish(n_label_points=5)
    return tmp_path / "set", data


def test_round_trip_and_manifest(built):
    directory, data = built
    ds = Dataset(directory, verify=True)
    assert len(ds) == 25 and ds.complete and ds.beams == ["A", "B"]
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert [e["n"] for e in manifest["shards"]] == list(SIZES)
    for entry in manifest["shards"]:
        assert entry["sha256"] == sha256_of(directory / entry["file"])
    assert manifest["summary"] == {"n_label_points": 5}
    np.testing.assert_array_equal(ds.grid("B").value, GRIDS["B"].value)

    table = ds.labels
    assert len(table) == 25 and table["teff"].unit == u.K and table["feh"].unit == u.dex
    np.testing.assert_array_equal(np.asarray(table["teff"]), data["labels"][:, 0])
    assert np.isnan(table["feh"][3])
    np.testing.assert_array_equal(np.asarray(table["seed"]), data["seed"])
    assert list(table["source"][:2]) == ["star0", "star1"]
    assert table["draw"].dtype == np.int16          # declared but never written: zeros
    assert not table["draw"].any()

    idx = [24, 0, 12, 12, -1, 9]
    flux, mask, labels, unc = ds.read_arrays(idx, "A")
    np.testing.assert_array_equal(flux, data["flux"]["A"][idx])
    np.testing.assert_array_equal(mask, data["mask"]["A"][idx])
    np.testing.assert_array_equal(labels, data["labels"][idx])
    np.testing.assert_array_equal(unc, data["unc"][idx])
    spectra = ds.read([5, 20])
    assert set(spectra) == {"A", "B"}
    spec_b = spectra["B"]
    assert spec_b.flux.shape == (2, 40)
    np.testing.assert_array_equal(spec_b.flux.value, data["flux"]["B"][[5, 20]])
    assert list(spec_b.meta["labels"]["source"]) == ["star5", "star20"]
    assert spec_b.meta["wavelength_medium"] == "air"
    with pytest.raises(IndexError):
        ds.read_arrays([25], "A")
    with pytest.raises(DatasetError, match="no beam 'C'"):
        ds.read([0], "C")


def test_resume_keeps_complete_shards_and_redoes_bad_ones(built):
    directory, data = built
    writer = writer_for(directory)
    assert writer.completed == [0, 1, 2]
    assert writer.has_shard(0, SIZES[0]) and writer.has_shard(1)
    # a count that disagrees with the plan, or a corrupt file, forces a rewrite
    assert not writer.has_shard(2, n=7)
    assert not (directory / shard_name(2)).exists() and writer.completed == [0, 1]
    path = directory / shard_name(1)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="SHA-256"):
        Dataset(directory, verify=True)
    assert not writer.has_shard(1)
    assert writer.completed == [0]
    assert len(Dataset(directory)) == SIZES[0] and not Dataset(directory).complete
    write_shard(writer, 1, data)
    write_shard(writer, 2, data)
    writer.finish()
    ds = Dataset(directory, verify=True)
    np.testing.assert_array_equal(ds.read_arrays(np.arange(25), "B")[0], data["flux"]["B"])


def test_interrupted_shard_leaves_nothing(tmp_path):
    data = make_data()
    writer = writer_for(tmp_path)
    with pytest.raises(RuntimeError, match="killed"):
        with writer.shard(0, 10) as shard:
            shard.append(flux={b: f[:3] for b, f in data["flux"].items()},
                         labels=data["labels"][:3])
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]
    with pytest.raises(DatasetError, match="3 of its 10 samples"):
        with writer.shard(0, 10) as shard:
            shard.append(flux={b: f[:3] for b, f in data["flux"].items()},
                         labels=data["labels"][:3])
    assert writer.completed == []
    # a temporary file left by a killed process is cleaned up by the next writer
    (tmp_path / ".tmp-shard-00000.h5.abc").write_bytes(b"partial")
    writer_for(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME]


def test_append_validation(tmp_path):
    data = make_data()
    writer = writer_for(tmp_path)
    with pytest.raises(ValueError, match="one entry per beam"):
        with writer.shard(0, 3) as shard:
            shard.append(flux={"A": data["flux"]["A"][:3]}, labels=data["labels"][:3])
    with pytest.raises(ValueError, match=r"expected \(3, 40\)"):
        with writer.shard(0, 3) as shard:
            shard.append(flux={"A": data["flux"]["A"][:3], "B": data["flux"]["A"][:3]},
                         labels=data["labels"][:3])
    with pytest.raises(ValueError, match="holds 2 samples"):
        with writer.shard(0, 2) as shard:
            shard.append(flux={b: f[:3] for b, f in data["flux"].items()},
                         labels=data["labels"][:3])
    with pytest.raises(ValueError, match="unknown metadata field 'colour'"):
        with writer.shard(0, 3) as shard:
            shard.append(flux={b: f[:3] for b, f in data["flux"].items()},
                         labels=data["labels"][:3], metadata={"colour": np.zeros(3)})


def test_refuses_a_different_set_unless_overwrite(built):
    directory, _ = built
    with pytest.raises(DatasetError, match="differs in: config"):
        DatasetWriter(directory, survey="marvels", grids=GRIDS,
                      label_names=("teff", "logg", "feh"), label_units=("K", "dex", "dex"),
                      wavelength_medium="air", config={"seed": 2, "library": "test"})
    writer = DatasetWriter(directory, survey="marvels", grids=GRIDS,
                           label_names=("teff", "logg", "feh"),
                           label_units=("K", "dex", "dex"), config={"seed": 2},
                           overwrite=True)
    assert writer.completed == []
    assert sorted(p.name for p in directory.iterdir()) == [MANIFEST_NAME]


def test_open_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a remap data set"):
        Dataset(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "remap-dataset",
                                                      "format_version": 99}))
    with pytest.raises(DatasetError, match="version 99"):
        Dataset(tmp_path)


def _epoch(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy() if not isinstance(y, dict) else {k: v.numpy() for k, v in y.items()})
    return np.concatenate(xs), ys


def test_to_tf_streams_all_rows_sequentially_and_shuffled(built):
    directory, data = built
    ds = Dataset(directory)
    plain = ds.to_tf("A", batch_size=4, shuffle=False, block_size=4)
    x, ys = _epoch(plain)
    assert x.shape == (25, 50, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, :, 0], data["flux"]["A"])
    np.testing.assert_array_equal(np.concatenate(ys), data["labels"].astype(np.float32))

    def order(x):
        # which stored row each streamed row is (rows are unique random vectors)
        return [int(np.flatnonzero((data["flux"]["A"] == row[:, 0]).all(axis=1))[0])
                for row in x]

    shuffled = ds.to_tf("A", batch_size=8, shuffle=True, seed=3, block_size=4,
                        shuffle_buffer=8)
    first, _ = _epoch(shuffled)
    second, _ = _epoch(shuffled)
    assert sorted(order(first)) == list(range(25))
    assert order(first) != list(range(25))
    assert order(first) != order(second)             # reshuffled each epoch
    again = Dataset(directory).to_tf("A", batch_size=8, shuffle=True, seed=3, block_size=4,
                                     shuffle_buffer=8)
    assert order(_epoch(again)[0]) == order(first)   # same seed -> same stream
    other = ds.to_tf("A", batch_size=8, shuffle=True, seed=4, block_size=4, shuffle_buffer=8)
    assert order(_epoch(other)[0]) != order(first)


def test_to_tf_label_encoder_and_subset(built):
    directory, data = built
    ds = Dataset(directory)

    def encoder(labels, unc):
        return {"teff": (labels[:, :1] / 1000).astype(np.float32),
                "mask": np.isfinite(labels).astype(np.float32)}

    subset = [2, 3, 17, 22]
    stream = ds.to_tf("B", batch_size=3, shuffle=False, label_encoder=encoder, indices=subset)
    x, ys = _epoch(stream)
    np.testing.assert_array_equal(x[:, :, 0], data["flux"]["B"][subset])
    teff = np.concatenate([y["teff"] for y in ys])[:, 0]
    np.testing.assert_allclose(teff, data["labels"][subset, 0] / 1000, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate([y["mask"] for y in ys])[1], [1, 1, 0])
    with pytest.raises(ValueError, match="batch_size"):
        ds.to_tf("B", batch_size=0)
    with pytest.raises(DatasetError, match="no samples"):
        ds.to_tf("B", batch_size=2, indices=[])


# --------------------------------------------------------------------------- remap dataset build

from astropy.table import Table  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from specutils import Spectrum  # noqa: E402

from remap.augment import augment  # noqa: E402
from remap.cli.app import cli  # noqa: E402
from remap import hookimpl  # noqa: E402
from remap.libraries.base import Domain, SyntheticLibrary  # noqa: E402
from remap.plugins import get_plugin_manager, get_survey  # noqa: E402


class ToyLibrary(SyntheticLibrary):
    """A tiny Gaussian-line library at R = 100,000 over both MARVELS beams."""

    name = "toy"
    wavelength_medium = "air"
    fail_at = None          # label-point teff at which spectrum() raises (to simulate a kill)
    lines = np.linspace(4870.0, 5730.0, 40)

    def __init__(self, step=0.02):
        self.step = float(step)
        self.wave = np.arange(4835.0, 5765.0, self.step)

    @property
    def domain(self):
        return Domain(teff=(4000.0, 6000.0), logg=(1.0, 5.0), feh=(-1.0, 0.5))

    @property
    def resolution(self):
        return 100_000

    @property
    def grid(self):
        return Table({"teff": [4500.0, 5500.0], "logg": [4.0, 2.0], "feh": [0.0, -0.5]})

    def spectrum(self, teff, logg, feh, alpha=0.0):
        if self.fail_at is not None and abs(teff - self.fail_at) < 1e-9:
            raise RuntimeError("simulated kill")
        depth = 0.2 + 0.1 * (teff - 4000) / 2000 + 0.1 * feh + 0.02 * logg
        sigma = self.lines / 100_000 / 2.3548
        resid = np.ones_like(self.wave)
        for lam, s in zip(self.lines, sigma):
            near = np.abs(self.wave - lam) < 8 * s
            resid[near] -= depth * np.exp(-0.5 * ((self.wave[near] - lam) / s) ** 2)
        cont = 1e-3 * (self.wave / 5000.0) ** -3
        return Spectrum(flux=resid * cont * u.Unit("erg / (s cm2 AA)"),
                        spectral_axis=self.wave * u.AA,
                        meta={"teff": teff, "logg": logg, "feh": feh, "alpha": alpha,
                              "resolution": 100_000, "wavelength_medium": "air",
                              "continuum": cont})


class ToyPlugin:
    @hookimpl
    def remap_synthetic_libraries(self):
        return [ToyLibrary]


@pytest.fixture
def toy(fresh_plugins):
    get_plugin_manager().register(ToyPlugin(), name="toy-plugin")
    ToyLibrary.fail_at = None
    yield ToyLibrary
    ToyLibrary.fail_at = None


def run_build(out, *extra):
    args = ["dataset", "build", "--library", "toy", "--out", str(out), "--n", "3",
            "--shard-size", "2", "--seed", "9", "--fitter", "none", "--no-progress",
            "--library-option", "step=0.02", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_cli_build_writes_a_deterministic_reproducible_set(toy, tmp_path):
    result = run_build(tmp_path / "one")
    assert result.exit_code == 0, result.output
    assert "label points: 3, samples: 135, shards: 2 (2 written, 0 already complete)" in \
        result.output
    ds = Dataset(tmp_path / "one", verify=True)
    assert len(ds) == 135 and ds.complete and ds.beams == ["A", "B"]
    assert ds.manifest["config"]["library_options"] == {"step": 0.02}
    table = ds.labels
    domain = ToyLibrary().domain
    assert np.all((table["teff"] >= domain.teff[0]) & (table["teff"] <= domain.teff[1]))
    assert len(np.unique(np.asarray(table["teff"]))) == 3
    np.testing.assert_array_equal(np.asarray(table["teff_err"]), 20.0)
    assert list(table["label_point"][44:46]) == [0, 1]
    flux, mask, _, _ = ds.read_arrays(np.arange(135), "A")
    assert flux.shape == (135, 4301) and not mask.any()

    # same command elsewhere, in two worker processes: the same bytes
    assert run_build(tmp_path / "two", "--workers", "2").exit_code == 0
    again = Dataset(tmp_path / "two").read_arrays(np.arange(135), "A")[0]
    assert again.tobytes() == flux.tobytes()

    # one sample is reproduced from its stored seed, independently of the build
    row = 45 + 17                                  # label point 1, 18th sample
    lib = ToyLibrary()
    spec = lib.spectrum(float(table["teff"][row]), float(table["logg"][row]),
                        float(table["feh"][row]), float(0.0))
    ref = ds.labels
    batch, samples = augment(spec, get_survey("marvels"), "B", fitter=None,
                             seed=np.random.SeedSequence(int(ref["seed"][row]),
                                                         spawn_key=(1,)))
    np.testing.assert_allclose(ds.read_arrays([row], "B")[0][0], batch.flux.value[17],
                               rtol=1e-6)
    assert samples["sigma"][17] == pytest.approx(float(ref["sigma"][row]))

    info = CliRunner().invoke(cli, ["dataset", "info", str(tmp_path / "one"), "--verify"])
    assert info.exit_code == 0, info.output
    assert "samples: 135 in 2 shards" in info.output
    assert "beam A: 4850.00-5280.00 Å, 4301 px" in info.output


def test_cli_build_resumes_after_a_kill(toy, tmp_path):
    assert run_build(tmp_path / "clean").exit_code == 0
    clean = Dataset(tmp_path / "clean")
    toy.fail_at = float(clean.labels["teff"][2 * 45])     # the first point of shard 1
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_build(tmp_path / "killed")
    partial = Dataset(tmp_path / "killed")
    assert len(partial) == 90 and not partial.complete
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [
        "manifest.json", "shard-00000.h5"]
    toy.fail_at = None
    result = run_build(tmp_path / "killed")
    assert result.exit_code == 0, result.output
    assert "(1 written, 1 already complete)" in result.output
    resumed = Dataset(tmp_path / "killed", verify=True)
    assert resumed.complete
    for beam in ("A", "B"):
        np.testing.assert_array_equal(resumed.read_arrays(np.arange(135), beam)[0],
                                      clean.read_arrays(np.arange(135), beam)[0])
    # a different seed in the same directory is refused
    other = run_build(tmp_path / "killed", "--seed", "10")
    assert other.exit_code != 0 and "different data set" in other.output


def test_cli_build_grid_and_usage_errors(toy, tmp_path):
    res = CliRunner().invoke(cli, ["dataset", "build", "--library", "toy", "--out",
                                   str(tmp_path / "g"), "--grid", "--fitter", "none",
                                   "--beam", "A", "--no-progress"])
    assert res.exit_code == 0, res.output
    ds = Dataset(tmp_path / "g")
    assert ds.beams == ["A"] and len(ds) == 90
    assert sorted(set(np.asarray(ds.labels["teff"]))) == [4500.0, 5500.0]
    both = CliRunner().invoke(cli, ["dataset", "build", "--library", "toy", "--out",
                                    str(tmp_path / "x"), "--grid", "--n", "2"])
    assert both.exit_code == 2 and "exactly one of --n N and --grid" in both.output
    unknown = CliRunner().invoke(cli, ["dataset", "build", "--library", "nope", "--out",
                                       str(tmp_path / "x"), "--n", "2"])
    assert unknown.exit_code == 1 and "unknown library 'nope'" in unknown.output
    badopt = CliRunner().invoke(cli, ["dataset", "build", "--library", "toy", "--out",
                                      str(tmp_path / "x"), "--n", "2",
                                      "--library-option", "step"])
    assert badopt.exit_code == 2 and "expected key=value" in badopt.output


def test_cli_build_with_the_real_linelist_library_and_algorithm1(tmp_path):
    result = CliRunner().invoke(cli, ["dataset", "build", "--library", "linelist", "--out",
                                      str(tmp_path / "ll"), "--n", "1", "--seed", "2",
                                      "--beam", "A", "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ds = Dataset(tmp_path / "ll", verify=True)
    assert len(ds) == 45 and ds.manifest["config"]["fitter"]["name"] == "algorithm1"
    flux, mask, labels, _ = ds.read_arrays(np.arange(45), "A")
    # continuum-normalized absorption spectra: median below 1, lines below (seed 2 draws
    # a 4,050 K metal-rich giant, [Fe/H] +0.44: crowded lines put the median near 0.78)
    assert 0.7 < np.median(flux) < 1.02 and flux.min() < 0.7
    # two draws of one noise level differ by the noise: rows 0-2 have 0.5 %, rows 12-14 2 %
    table = ds.labels
    assert np.allclose(np.asarray(table["sigma"][12:15]), 0.02)
    for a, b, sigma in ((0, 1, 0.005), (12, 13, 0.02)):
        np.testing.assert_allclose(np.std(flux[a] - flux[b]) / np.sqrt(2), sigma, rtol=0.2)
    assert len(np.unique(labels, axis=0)) == 1


def test_draw_labels_uniform_seeded_and_prefix_stable():
    from remap.datasets import draw_labels
    domain = Domain(teff=(3000.0, 7000.0), logg=(1.0, 5.5), feh=(-2.0, 1.0),
                    alpha=(-0.2, 1.2))
    big = draw_labels(domain, 2000, seed=4)
    small = draw_labels(domain, 10, seed=4)
    for name in ("teff", "logg", "feh"):
        lo, hi = getattr(domain, name)
        values = np.asarray(big[name])
        assert lo <= values.min() and values.max() <= hi
        # uniform: each quarter of the range holds ~1/4 of the points
        counts = np.histogram(values, bins=4, range=(lo, hi))[0]
        assert np.all(np.abs(counts - 500) < 5 * np.sqrt(500))
        np.testing.assert_array_equal(np.asarray(small[name]), values[:10])
    assert np.all(np.asarray(big["alpha"]) == 0.0)
    varied = np.asarray(draw_labels(domain, 50, seed=4, vary_alpha=True)["alpha"])
    assert varied.min() >= -0.2 and varied.max() <= 1.2 and np.ptp(varied) > 0.5
    with pytest.raises(ValueError, match="n must be"):
        draw_labels(domain, 0, seed=1)


def test_shard_level_normalization_equals_per_label_point_augment(toy, tmp_path):
    """The build fits the continuum once per shard and beam; each stored spectrum
    must equal augment(..., fitter="algorithm1") of its own label point."""
    result = CliRunner().invoke(cli, [
        "dataset", "build", "--library", "toy", "--out", str(tmp_path / "n"), "--n", "2",
        "--shard-size", "2", "--seed", "4", "--no-progress",
        "--library-option", "step=0.02"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ds = Dataset(tmp_path / "n")
    table = ds.labels
    lib = ToyLibrary(step=0.02)
    for point in (0, 1):
        row = 45 * point
        spec = lib.spectrum(float(table["teff"][row]), float(table["logg"][row]),
                            float(table["feh"][row]), 0.0)
        for b, beam in enumerate(ds.beams):
            batch, _ = augment(spec, get_survey("marvels"), beam, fitter="algorithm1",
                               seed=np.random.SeedSequence(int(table["seed"][row]),
                                                           spawn_key=(b,)))
            stored = ds.read_arrays(np.arange(row, row + 45), beam)[0]
            np.testing.assert_allclose(stored, batch.flux.value, rtol=2e-6, atol=1e-6)
            assert 0.9 < np.median(stored) < 1.1


def test_to_tf_declares_its_length(built):
    import tensorflow as tf

    ds = Dataset(built[0])
    n = len(ds)
    stream = ds.to_tf(ds.beams[0], batch_size=7, shuffle=True, seed=1)
    assert int(stream.cardinality()) == -(-n // 7)
    assert sum(int(x.shape[0]) for x, _ in stream) == n
    dropped = ds.to_tf(ds.beams[0], batch_size=7, drop_remainder=True)
    assert int(dropped.cardinality()) == n // 7
    assert int(tf.data.experimental.cardinality(ds.to_tf(ds.beams[0], 5, indices=[0, 1, 2]))) == 1


def test_vmicro_nuisance_draw_is_seeded_recorded_and_changes_the_lines(tmp_path):
    from remap import get_survey
    from remap.datasets import build_synthetic
    from remap.datasets.build import VMICRO_MIN, label_point_seed, label_point_vmicro
    from remap.libraries.linelist import LineListLibrary

    lib = LineListLibrary(wave_range=(4840, 5290) * u.AA, resolution=50_000)
    survey = get_survey("marvels")
    labels = Table({"teff": [5800.0, 5200.0], "logg": [4.4, 4.6], "feh": [0.0, -0.3],
                    "alpha": [0.0, 0.0]})
    common = dict(seed=3, shard_size=2, beams=["A"], resolutions=[11000.0],
                  noise_levels=[0.0], draws=1)
    plain = build_synthetic(tmp_path / "plain", lib, survey, labels, **common)
    drawn = build_synthetic(tmp_path / "vmic", lib, survey, labels, vmicro_sigma=0.8, **common)
    assert plain["n_samples"] == drawn["n_samples"] == 2
    a, b = Dataset(tmp_path / "plain"), Dataset(tmp_path / "vmic")
    assert "vmicro" not in a.labels.colnames and "vmicro_sigma" not in a.manifest["config"]
    assert b.manifest["config"]["vmicro_sigma"] == 0.8
    got = np.asarray(b.labels["vmicro"], dtype=float)
    for i in range(2):
        row = {k: float(labels[k][i]) for k in ("teff", "logg", "feh")}
        want = label_point_vmicro(lib, row, label_point_seed(3, i), 0.8)
        assert got[i] == pytest.approx(want, rel=1e-6) and want >= VMICRO_MIN
        assert want != pytest.approx(lib.vmicro_at(**row), abs=1e-3)
    # the same seed gives the same draw; the drawn microturbulence changes the lines
    again = build_synthetic(tmp_path / "again", lib, survey, labels, vmicro_sigma=0.8, **common)
    assert again["n_samples"] == 2
    fa = a.read_arrays(np.arange(2), "A")[0]
    fb = b.read_arrays(np.arange(2), "A")[0]
    fc = Dataset(tmp_path / "again").read_arrays(np.arange(2), "A")[0]
    np.testing.assert_array_equal(fb, fc)
    assert np.max(np.abs(fa - fb)) > 1e-3
    # a library without vmicro= is refused with a clear message; a bad width too
    with pytest.raises(DatasetError, match="vmicro_sigma needs a library"):
        build_synthetic(tmp_path / "toy", ToyLibrary(), survey, labels[:1], vmicro_sigma=0.5,
                        **common)
    with pytest.raises(ValueError, match="vmicro_sigma must be"):
        build_synthetic(tmp_path / "bad", lib, survey, labels, vmicro_sigma=-1, **common)


def test_library_spectrum_takes_a_per_call_microturbulence():
    from remap.libraries.linelist import LineListLibrary

    wr = (5160, 5200) * u.AA
    lib = LineListLibrary(wave_range=wr)
    fixed = LineListLibrary(wave_range=wr, vmicro=1.7)
    s = lib.spectrum(5772.0, 4.44, 0.0, vmicro=1.7)
    np.testing.assert_array_equal(s.flux.value, fixed.spectrum(5772.0, 4.44, 0.0).flux.value)
    assert s.meta["vmicro"] == 1.7
    default = lib.spectrum(5772.0, 4.44, 0.0).meta["vmicro"]
    assert default == pytest.approx(lib.vmicro_at(5772.0, 4.44))
    with pytest.raises(ValueError, match="vmicro"):
        lib.spectrum(5772.0, 4.44, 0.0, vmicro=20.0)


def test_cli_build_vmicro_sigma_is_passed_through(toy, tmp_path):
    # the toy library has no vmicro=: the CLI reports the builder's error
    result = CliRunner().invoke(cli, ["dataset", "build", "--library", "toy", "--out",
                                      str(tmp_path / "x"), "--n", "1", "--fitter", "none",
                                      "--no-progress", "--vmicro-sigma", "0.5"])
    assert result.exit_code == 1 and "vmicro_sigma needs a library" in result.output
    bad = CliRunner().invoke(cli, ["dataset", "build", "--library", "toy", "--out",
                                   str(tmp_path / "y"), "--n", "1", "--vmicro-sigma", "9"])
    assert bad.exit_code == 2
