"""Tests of the built-in ``linelist`` synthetic library (physics, API, errors)."""

import numpy as np
import pytest
import astropy.units as u
from astropy.modeling.physical_models import BlackBody
from astropy.table import Table

import remap
from remap.libraries import _atomic
from remap.libraries.linelist import FLUX_UNIT, LineListLibrary


@pytest.fixture(scope="module")
def mgfe():
    """Mg b and Fe/Ti lines, 5160-5240 Å, normalized."""
    return LineListLibrary(wave_range=(5160, 5240) * u.AA, normalized=True)


@pytest.fixture(scope="module")
def hbeta():
    return LineListLibrary(wave_range=(4830, 4895) * u.AA, normalized=True)


def ew_mA(spec, center, half=0.12):
    """Equivalent width (mÅ) within ±half Å of a line."""
    w = spec.spectral_axis.to_value(u.AA)
    m = np.abs(w - center) < half
    return 1e3 * np.trapezoid(1.0 - spec.flux.value[m], w[m])


def band_depth(spec, center, inner, outer):
    w = spec.spectral_axis.to_value(u.AA)
    m = (np.abs(w - center) > inner) & (np.abs(w - center) < outer)
    return 1.0 - spec.flux.value[m].mean()


FE1, FE2A, FE2B, TI1, MGB = 5216.274, 5197.577, 5234.625, 5210.385, 5183.604


def test_registered_through_plugins():
    assert "linelist" in remap.list_libraries()
    lib = remap.get_library("linelist", wave_range=(5170, 5175) * u.AA, vmicro=1.5)
    assert isinstance(lib, LineListLibrary)
    assert lib.vmicro == 1.5 and lib.wavelength_medium == "air"


def test_spectrum_units_meta_and_grid(mgfe):
    lib = LineListLibrary(wave_range=(5170, 5180) * u.AA)
    s = lib.spectrum(teff=5777, logg=4.44, feh=0.0)
    assert s.flux.unit == FLUX_UNIT
    assert s.spectral_axis.unit == u.AA
    assert s.meta["wavelength_medium"] == "air"
    assert s.meta["resolution"] == 100_000
    assert (s.meta["teff"], s.meta["logg"], s.meta["feh"], s.meta["alpha"]) == (5777, 4.44, 0, 0)
    cont = s.meta["continuum"]
    assert cont.unit == FLUX_UNIT and cont.shape == s.flux.shape
    # the flux never exceeds the continuum, and lines take it well below
    ratio = (s.flux / cont).decompose().value
    assert ratio.max() <= 1.0 + 1e-12 and ratio.min() < 0.5
    # log-uniform pixels, 3 per resolution element
    w = s.spectral_axis.value
    np.testing.assert_allclose(np.diff(np.log(w)), 1.0 / 300_000, rtol=1e-9)
    # normalized output is the same spectrum divided by its continuum
    n = lib.spectrum(5777, 4.44, 0.0, normalized=True)
    assert n.flux.unit == u.dimensionless_unscaled
    np.testing.assert_allclose(n.flux.value, ratio, rtol=1e-12)
    assert n.meta["normalized"] is True


def test_continuum_is_pi_blackbody_and_bluer_when_hotter():
    lib = LineListLibrary(wave_range=(4800, 5800) * u.AA, resolution=50_000)
    w = lib.wavelength
    slopes = []
    for teff in (3500.0, 5000.0, 6500.0):
        cont = lib._continuum(teff) * FLUX_UNIT
        bb = BlackBody(temperature=teff * u.K, scale=1.0 * FLUX_UNIT / u.sr)
        np.testing.assert_allclose(cont.value, (np.pi * u.sr * bb(w)).to_value(FLUX_UNIT),
                                   rtol=1e-10)
        slopes.append(cont[0].value / cont[-1].value)
    assert slopes[0] < slopes[1] < slopes[2]


def test_normalized_flux_in_range_and_deterministic(mgfe):
    a = mgfe.spectrum(4200, 4.8, 0.5)
    b = mgfe.spectrum(4200, 4.8, 0.5)
    assert a.flux.value.tobytes() == b.flux.value.tobytes()
    f = a.flux.value
    assert np.all(f > 0) and f.max() <= 1.0 + 1e-12 and f.min() < 0.3


def test_iron_lines_grow_with_metallicity(mgfe):
    ews = [ew_mA(mgfe.spectrum(5800, 4.5, feh), FE1) for feh in (-2.0, -1.0, 0.0, 1.0)]
    assert np.all(np.diff(ews) > 0), ews
    assert ews[-1] > 1.3 * ews[1]


def test_ionization_balance_feII_over_feI_rises_at_low_gravity(mgfe):
    ratios = []
    for logg in (5.5, 4.0, 2.5, 1.0):
        s = mgfe.spectrum(5800, logg, 0.0)
        ratios.append((ew_mA(s, FE2A) + ew_mA(s, FE2B)) / ew_mA(s, FE1))
    assert np.all(np.diff(ratios) > 0), ratios


def test_mg_b_wings_broaden_with_gravity(mgfe):
    wings = [band_depth(mgfe.spectrum(5000, logg, 0.0), MGB, 1.0, 2.5) for logg in (2.0, 3.5, 5.0)]
    assert np.all(np.diff(wings) > 0), wings
    assert wings[-1] > 2 * wings[0]


def test_low_excitation_neutral_lines_weaken_when_hotter(mgfe):
    ews = [ew_mA(mgfe.spectrum(teff, 4.5, 0.0), TI1) for teff in (4500, 5500, 6500)]
    assert np.all(np.diff(ews) < 0), ews


def test_hbeta_stronger_in_hot_stars(hbeta):
    # at [Fe/H] = -1 the 2-8 Å band measures H beta's wings, not the metal lines that
    # blanket it in a solar-metallicity K dwarf (there the band is ~0.16 deep from metals)
    cool = hbeta.spectrum(4500, 4.5, -1.0)
    hot = hbeta.spectrum(6500, 4.5, -1.0)
    assert band_depth(hot, 4861.323, 2.0, 8.0) > 1.5 * band_depth(cool, 4861.323, 2.0, 8.0)
    assert ew_mA(hot, 4861.323, 15.0) > ew_mA(cool, 4861.323, 15.0)


def test_alpha_enhancement_strengthens_mg_not_fe(mgfe):
    base = mgfe.spectrum(5500, 4.0, -1.0, alpha=0.0)
    rich = mgfe.spectrum(5500, 4.0, -1.0, alpha=0.4)
    assert ew_mA(rich, MGB, 1.5) > 1.1 * ew_mA(base, MGB, 1.5)
    assert ew_mA(rich, FE1) == pytest.approx(ew_mA(base, FE1), rel=0.05)


def test_batch_matches_single_spectra(mgfe):
    labels = Table({"teff": [4000.0, 6000.0], "logg": [4.5, 2.0], "feh": [0.0, -1.0],
                    "alpha": [0.0, 0.2]})
    batch = mgfe.spectra(labels)
    assert batch.flux.shape == (2, mgfe.wavelength.size)
    for i, row in enumerate(labels):
        single = mgfe.spectrum(row["teff"], row["logg"], row["feh"], row["alpha"])
        assert batch.flux.value[i].tobytes() == single.flux.value.tobytes()
    np.testing.assert_array_equal(batch.meta["teff"], [4000.0, 6000.0])
    assert batch.meta["continuum"].shape == (2, mgfe.wavelength.size)
    three = mgfe.spectra(np.array([[4000.0, 4.5, 0.0]]))
    assert three.flux.value[0].tobytes() == batch.flux.value[0].tobytes()


@pytest.mark.parametrize("labels, message", [
    ((2500, 4.5, 0.0), "teff=2500"),
    ((5000, 6.0, 0.0), "logg=6.0"),
    ((5000, 4.5, 1.5), "feh=1.5"),
    ((5000, 4.5, 0.0, 2.0), "alpha=2.0"),
    ((float("nan"), 4.5, 0.0), "teff must be finite"),
])
def test_bad_labels_raise(mgfe, labels, message):
    with pytest.raises(ValueError, match=message):
        mgfe.spectrum(*labels)


def test_bad_batch_and_options_raise(mgfe):
    with pytest.raises(ValueError, match=r"labels row 1.*logg"):
        mgfe.spectra(np.array([[5000, 4.5, 0.0], [5000, 0.5, 0.0]]))
    with pytest.raises(ValueError, match=r"shape \(n, 3\) or \(n, 4\)"):
        mgfe.spectra(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="lacks column"):
        mgfe.spectra(Table({"teff": [5000.0], "logg": [4.0]}))
    with pytest.raises(TypeError, match="teff must be a real number"):
        mgfe.spectrum("hot", 4.5, 0.0)
    with pytest.raises(ValueError, match="beyond the line list"):
        LineListLibrary(wave_range=(4500, 5000) * u.AA)
    with pytest.raises(TypeError, match="Quantity"):
        LineListLibrary(wave_range=(4900, 5000))
    with pytest.raises(ValueError, match="resolution \\* sampling"):
        LineListLibrary(resolution=10_000)
    with pytest.raises(ValueError, match="vmicro"):
        LineListLibrary(vmicro=-1.0)


def test_grid_view_is_phoenix_like(mgfe):
    grid = mgfe.grid
    assert grid.colnames == ["teff", "logg", "feh", "alpha"]
    assert len(grid) == 41 * 10 * 7
    assert np.unique(grid["teff"]).tolist()[:3] == [3000.0, 3100.0, 3200.0]
    assert np.unique(grid["logg"]).tolist() == [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5]
    assert all(mgfe.domain.contains(*row) for row in grid[::97])


def test_electron_pressure_solves_charge_conservation():
    data = _atomic.load_atomic_data()
    t = np.array([3000.0, 5000.0, 7000.0, 9000.0])
    pg = np.array([1e6, 1e5, 1e3, 1e2])
    log_phi = data.log_saha(t)
    a = 10.0 ** (data.log_eps_sun - 12.0)
    weights = a / a.sum()
    pe = _atomic.electron_pressure(log_phi, pg, weights)
    fr = _atomic.ionization_fractions(log_phi, pe)
    electrons_per_nucleus = (fr[..., 1] + 2 * fr[..., 2]) @ weights
    np.testing.assert_allclose(pe, (pg - pe) * electrons_per_nucleus, rtol=1e-8)
    # hydrogen ionizes as T rises
    assert np.all(np.diff(fr[:, data.index("H"), 1]) > 0)


# -- accuracy="fast" against the reference path --------------------------------

#: Labels spanning the domain: cool giant, cool dwarf (strongest damping wings),
#: the Sun, a hot metal-poor dwarf, and the extreme corners.
REFERENCE_LABELS = [(4000, 1.5, 0.0, 0.0), (3500, 4.8, 0.0, 0.0), (5777, 4.44, 0.0, 0.0),
                    (6800, 4.0, -2.0, 0.4), (3000, 5.5, 1.0, 0.0), (7000, 1.0, 1.0, 1.2)]

#: Documented bound on |fast - high| in normalized flux (measured: <= 3.1e-4).
FAST_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def full_range_pair():
    """The whole 4800-5800 Å range at R = 100,000, both accuracy paths."""
    return (LineListLibrary(normalized=True),
            LineListLibrary(normalized=True, accuracy="high"))


@pytest.mark.parametrize("labels", REFERENCE_LABELS)
def test_fast_path_matches_reference_path(full_range_pair, labels):
    fast, high = full_range_pair
    f = fast.spectrum(*labels).flux.value
    h = high.spectrum(*labels).flux.value
    assert np.max(np.abs(f - h)) < FAST_TOLERANCE
    # the tolerance is reached only at a few pixels of partly saturated lines
    assert np.mean(np.abs(f - h)) < 5e-5
    # deterministic: identical bytes on a repeated call
    assert fast.spectrum(*labels).flux.value.tobytes() == f.tobytes()


def test_fast_path_equivalent_in_line_physics(mgfe):
    """Equivalent widths from the two paths agree to 0.1 %."""
    high = LineListLibrary(wave_range=(5160, 5240) * u.AA, normalized=True, accuracy="high")
    for labels in [(5000, 5.0, 0.0), (4000, 1.5, 0.5), (6500, 4.0, -1.0)]:
        a, b = mgfe.spectrum(*labels), high.spectrum(*labels)
        for center, half in [(MGB, 1.5), (FE1, 0.12), (FE2A, 0.12)]:
            assert ew_mA(a, center, half) == pytest.approx(ew_mA(b, center, half), rel=1e-3)


def test_voigt_table_matches_scipy():
    from scipy.special import voigt_profile
    from remap.libraries.linelist import VoigtTable, voigt_table
    table = voigt_table()
    assert table is voigt_table()
    assert table.max_error < 1.1e-4                 # documented: 1.0e-4 of the peak
    sigma, x = 0.02, np.linspace(-table.v_max, table.v_max, 801) * np.sqrt(2) * 0.02
    for gamma in (0.0, 1e-5, 1e-3, 0.01, 0.05, 0.2):
        exact = voigt_profile(x, sigma, gamma)
        approx = table.profile(x, sigma, gamma)
        assert np.max(np.abs(approx - exact)) < 1.1e-4 * voigt_profile(0.0, sigma, gamma)
    # a coarser table is less accurate, as the error bound says
    assert VoigtTable(dv=0.08).max_error > 4 * table.max_error


def test_locate_is_searchsorted(mgfe):
    lib = LineListLibrary()
    rng = np.random.default_rng(3)
    for coarse, grid in ((False, lib._wave), (True, lib._coarse_wave)):
        x = np.concatenate([rng.uniform(4700.0, 5900.0, 20_000), grid[::5],
                            np.nextafter(grid[::7], 0.0), np.nextafter(grid[::9], np.inf)])
        for side in ("left", "right"):
            np.testing.assert_array_equal(lib._locate(coarse, x, side),
                                          np.searchsorted(grid, x, side=side))


def test_accuracy_option(mgfe):
    assert mgfe.accuracy == "fast"
    assert mgfe.spectrum(5000, 4.5, 0.0).meta["accuracy"] == "fast"
    high = LineListLibrary(wave_range=(5170, 5175) * u.AA, accuracy="high")
    assert high.spectrum(5000, 4.5, 0.0).meta["accuracy"] == "high"
    with pytest.raises(ValueError, match="accuracy must be one of"):
        LineListLibrary(accuracy="exact")


def test_spectra_share_a_read_only_axis(mgfe):
    a = mgfe.spectrum(5000, 4.5, 0.0)
    b = mgfe.spectrum(5500, 4.0, 0.0)
    assert a.spectral_axis is b.spectral_axis
    with pytest.raises(ValueError):
        a.spectral_axis[0] = 1.0 * u.AA
    np.testing.assert_array_equal(a.spectral_axis.value, mgfe.wavelength.value)


def test_loggf_offsets_reach_both_paths():
    """Per-line log gf offsets (used by remap.simulate) change the lines on both paths alike."""
    plain = LineListLibrary(wave_range=(5165, 5195) * u.AA, normalized=True)
    before = plain.spectrum(5500, 4.4, 0.0).flux.value
    offsets = np.full(plain.n_lines, 0.3)
    libs = [LineListLibrary(wave_range=(5165, 5195) * u.AA, normalized=True, accuracy=acc,
                            loggf_offsets=offsets) for acc in ("fast", "high")]
    fast, high = (lib.spectrum(5500, 4.4, 0.0).flux.value for lib in libs)
    assert np.max(np.abs(fast - before)) > 0.01
    # stronger lines: less flux in the cores
    assert fast.sum() < before.sum()
    assert np.max(np.abs(fast - high)) < FAST_TOLERANCE
    np.testing.assert_array_equal(libs[0].loggf_offsets, offsets)
    with pytest.raises(ValueError, match="one value per line"):
        LineListLibrary(wave_range=(5165, 5195) * u.AA, loggf_offsets=np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        LineListLibrary(loggf_offsets=[np.nan])
