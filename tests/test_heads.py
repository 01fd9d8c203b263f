import astropy.units as u
import pytest

import remap
from remap.heads import FEH, LOGG, TEFF, HeadSpec


def test_builtin_heads_registered_in_order():
    assert remap.list_heads()[:3] == ["teff", "logg", "feh"]
    assert remap.get_head("teff") is TEFF


@pytest.mark.parametrize("head, n_bins", [(TEFF, 50), (LOGG, 45), (FEH, 30)])
def test_bin_counts_match_method(head, n_bins):
    # METHOD.md: 80 K -> 50 bins over 3000-7000 K; 0.1 dex -> 45 and 30 bins
    assert head.n_bins == n_bins


def test_units():
    assert TEFF.unit == u.K
    assert LOGG.unit == u.dex and FEH.unit == u.dex


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="bad name"), "identifier"),
    (dict(low=5.0, high=1.0), "low < high"),
    (dict(bin_width=0.0), "bin_width"),
    (dict(synthetic_sigma=-1.0), "synthetic_sigma"),
])
def test_headspec_validation(kwargs, match):
    base = dict(name="alpha_fe", label="[a/Fe]", unit=u.dex, low=-0.2, high=0.6,
                bin_width=0.05, synthetic_sigma=0.02)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        HeadSpec(**base)


def test_unknown_head_lists_known():
    with pytest.raises(remap.UnknownPluginError, match="teff"):
        remap.get_head("alpha_fe")
