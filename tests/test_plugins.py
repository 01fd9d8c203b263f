"""The plugin system, exercised through real entry-point metadata.

Every third-party plugin here is a throwaway distribution written by the
``make_dist`` fixture (see ``conftest.py``): a package plus a ``.dist-info``
folder whose ``entry_points.txt`` declares the ``remap.plugins`` group, found
by :mod:`importlib.metadata` exactly as a pip-installed plugin would be.
"""

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from click.testing import CliRunner
from specutils import Spectrum

import remap
import remap.surveys
from remap.cli.app import cli
from remap.exceptions import DuplicatePluginError, PluginError, UnknownPluginError
from remap.plugins import get_plugin_manager, plugin_infos, reset_plugin_manager

DOCS_EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "remap_toy_survey"

TOY_PLUGIN = '''
    from remap import hookimpl


    class ToySurvey:
        """A one-beam survey used by the tests."""

        name = "{name}"
        description = "toy survey from {dist}"
        wavelength_medium = "air"


    @hookimpl
    def remap_surveys():
        return [ToySurvey]
'''


def toy_files(package, name="toy", dist="toy-remap-plugin"):
    """Source files of a package whose plugin module registers one survey ``name``."""
    return {f"{package}/__init__.py": "",
            f"{package}/plugin.py": TOY_PLUGIN.format(name=name, dist=dist)}


def install_toy(make_dist, dist="toy-remap-plugin", package="toy_remap_plugin", name="toy",
                entry_point="toy", version="0.1"):
    return make_dist(dist, toy_files(package, name, dist),
                     {entry_point: f"{package}.plugin"}, version=version)


class Extra:
    """A survey factory registered at run time by some tests."""

    name = "extra"


def runtime_survey_plugin(*factories):
    """A plugin object, for ``pm.register``, whose ``remap_surveys()`` returns ``factories``."""
    class RuntimePlugin:
        @remap.hookimpl
        def remap_surveys(self):
            return list(factories)

    return RuntimePlugin()


def test_builtin_plugins_report_remap_as_their_distribution(fresh_plugins):
    heads = {info.name: info for info in plugin_infos("head")}
    assert list(heads)[:3] == ["teff", "logg", "feh"]
    assert heads["teff"].distribution == "remap"
    assert heads["teff"].version == importlib.metadata.version("remap")
    assert heads["teff"].plugin == "heads"
    assert "marvels" in remap.list_surveys()


def test_third_party_survey_is_discovered(make_dist):
    install_toy(make_dist)
    survey = remap.get_survey("toy")
    assert survey.name == "toy"
    assert type(survey).__module__ == "toy_remap_plugin.plugin"
    assert "toy" in remap.list_surveys()
    info = {i.name: i for i in plugin_infos("survey")}["toy"]
    assert (info.distribution, info.version, info.plugin) == ("toy-remap-plugin", "0.1", "toy")
    assert info.source == "toy-remap-plugin 0.1"
    # the built-ins are still there next to it
    assert "teff" in remap.list_heads()


def test_builtins_register_first_whatever_the_path_order(make_dist):
    source = """
        import astropy.units as u
        from remap import hookimpl
        from remap.heads import HeadSpec

        @hookimpl
        def remap_heads():
            return [HeadSpec("alpha_fe", "[alpha/Fe]", u.dex, -0.2, 0.6, 0.1, 0.1)]
    """
    site = make_dist("alpha-head", {"alpha_head.py": source}, {"alpha": "alpha_head"})
    assert sys.path[0] == str(site)  # the plugin's distribution is found first
    assert remap.list_heads() == ["teff", "logg", "feh", "alpha_fe"]
    assert remap.get_head("alpha_fe").n_bins == 8


def test_get_survey_passes_options_to_the_factory(fresh_plugins):
    # the option marvels.py documents (a TypeError before every hook returned factories)
    vacuum = remap.get_survey("marvels", wavelength_medium="vacuum")
    assert isinstance(vacuum, remap.surveys.MARVELS)
    assert vacuum.wavelength_medium == "vacuum"
    assert remap.get_survey("marvels").wavelength_medium == "air"
    with pytest.raises(ValueError, match="wavelength_medium"):
        remap.get_survey("marvels", wavelength_medium="water")
    with pytest.raises(TypeError, match="unexpected keyword argument 'resolution'"):
        remap.get_survey("marvels", resolution=5)


def test_every_kind_registers_factories(fresh_plugins):
    for kind in ("survey", "library", "continuum", "head"):
        for info in plugin_infos(kind):
            assert callable(info.factory) and info.obj is info.factory
    # a HeadSpec is its own factory: itself, or a copy with fields replaced
    teff = remap.get_head("teff")
    assert remap.get_head("teff") is teff and teff.n_bins == 50
    fine = remap.get_head("teff", bin_width=40.0)
    assert (fine.name, fine.n_bins, teff.bin_width) == ("teff", 100, 80.0)
    with pytest.raises(TypeError, match=r"no field\(s\) \['bins'\]"):
        remap.get_head("teff", bins=10)
    with pytest.raises(ValueError, match="bin_width > 0"):
        remap.get_head("teff", bin_width=-1.0)
    fitter = remap.get_continuum_fitter("clipped", degree=5)
    assert type(fitter).__name__ == "Clipped"


@pytest.mark.parametrize("returned, cls", [("ToySurvey()", "ToySurvey"),
                                           ("MARVELS()", "MARVELS")])
def test_an_instance_instead_of_a_factory_is_refused(make_dist, returned, cls):
    source = f"""
        from remap import hookimpl
        from remap.surveys import MARVELS


        class ToySurvey:
            name = "toy"


        @hookimpl
        def remap_surveys():
            return [{returned}]
    """
    make_dist("instance-dist", {"instance_pkg.py": source}, {"inst": "instance_pkg"})
    with pytest.raises(PluginError) as excinfo:
        remap.list_surveys()
    message = str(excinfo.value)
    assert "'inst' (instance-dist 0.1)" in message
    assert f"an instance of {cls}, not a factory" in message
    assert f"return the class {cls} itself" in message


def test_a_callable_instance_of_a_fitter_is_refused(fresh_plugins):
    class FitterPlugin:
        @remap.hookimpl
        def remap_continuum_fitters(self):
            return [remap.get_continuum_fitter("clipped")]  # callable, but an instance

    get_plugin_manager().register(FitterPlugin(), name="fitter-instance")
    with pytest.raises(PluginError, match="an instance of Clipped, not a factory"):
        remap.list_continuum_fitters()


def test_function_factories_with_a_name(fresh_plugins):
    def vacuum_marvels(**options):
        return remap.surveys.MARVELS(wavelength_medium="vacuum", **options)

    vacuum_marvels.name = "marvels_vacuum"

    get_plugin_manager().register(runtime_survey_plugin(vacuum_marvels), name="function-plugin")
    survey = remap.get_survey("marvels_vacuum", known_spikes=[5000.0] * u.AA)
    assert survey.wavelength_medium == "vacuum"
    assert u.allclose(survey.known_spikes, [5000.0] * u.AA)


COUNTING_PLUGIN = """
    import remap

    calls = []


    class Counted:
        name = "counted"
        description = "counts its hook calls"


    @remap.hookimpl
    def remap_surveys():
        calls.append(1)
        return [Counted]
"""


def test_registries_are_collected_once_and_cached(make_dist):
    make_dist("count-dist", {"count_pkg.py": COUNTING_PLUGIN}, {"count": "count_pkg"})
    for _ in range(3):
        assert "counted" in remap.list_surveys()
        remap.get_survey("marvels")
        plugin_infos("survey")
    count_pkg = sys.modules["count_pkg"]
    assert len(count_pkg.calls) == 1
    remap.list_heads()  # another kind is its own registry
    assert len(count_pkg.calls) == 1

    pm = get_plugin_manager()
    plugin = runtime_survey_plugin(Extra)
    pm.register(plugin, name="runtime-extra")  # the plugin set changed: collected again
    assert "extra" in remap.list_surveys() and len(count_pkg.calls) == 2
    assert "extra" in remap.list_surveys() and len(count_pkg.calls) == 2
    pm.unregister(plugin)
    assert "extra" not in remap.list_surveys() and len(count_pkg.calls) == 3
    pm.set_blocked("marvels")
    assert remap.list_surveys() == ["counted"] and len(count_pkg.calls) == 4


DERIVED_PLUGIN = """
    import remap
    from remap.surveys import Survey


    @remap.hookimpl
    def remap_surveys():
        # the natural way to derive a survey: look the built-in one up inside the hook
        marvels = remap.get_survey("marvels")
        assert "marvels" in remap.list_surveys()

        class MarvelsA(Survey):
            name = "marvels_a"
            description = "MARVELS beam A only"
            wavelength_medium = marvels.wavelength_medium
            beams = {"A": marvels.beams["A"]}

        return [MarvelsA]
"""


def test_a_hook_may_derive_from_a_builtin_survey(make_dist):
    make_dist("derived-dist", {"derived_pkg.py": DERIVED_PLUGIN}, {"derived": "derived_pkg"})
    derived = remap.get_survey("marvels_a")
    assert list(derived.beams) == ["A"]
    assert derived.beams["A"] == remap.get_survey("marvels").beams["A"]
    assert derived.wavelength_medium == "air"
    assert remap.list_surveys() == ["marvels", "marvels_a"]
    info = {i.name: i for i in plugin_infos("survey")}["marvels_a"]
    assert (info.plugin, info.distribution) == ("derived", "derived-dist")
    # the same from a fresh process, through the command line
    result = CliRunner().invoke(cli, ["plugins", "--kind", "survey"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^  marvels_a +derived-dist 0.1  \[plugin derived\]  MARVELS beam A only",
                     result.output, re.M)


def test_a_hook_looking_up_a_name_not_collected_yet_gets_a_clear_error(make_dist):
    source = """
        import remap


        @remap.hookimpl
        def remap_surveys():
            base = remap.get_survey("later")  # registered by this very hook: not yet there
            return []
    """
    make_dist("early-dist", {"early_pkg.py": source}, {"early": "early_pkg"})
    with pytest.raises(PluginError) as excinfo:
        remap.list_surveys()
    message = str(excinfo.value)
    assert len(message) < 1000  # one message, not a thousand-deep chain
    assert "remap_surveys() of plugin 'early' (early-dist 0.1) failed" in message
    assert "survey 'later' is not available while the remap_surveys() hooks" in message
    assert "inside the hook of plugin 'early'" in message and "(marvels)" in message
    assert "calls remap.get_survey('later') in its body" in message
    depth, exc = 0, excinfo.value
    while exc is not None:
        depth, exc = depth + 1, exc.__cause__ or exc.__context__
    assert depth <= 3


def test_a_factory_may_look_up_any_survey_when_called(make_dist):
    source = """
        import remap


        def wide(**options):
            # looked up when called, so it may use surveys registered after this plugin
            toy = remap.get_survey("toy")
            return type(toy)(wavelength_medium="air", **options)

        wide.name = "toy_air"


        @remap.hookimpl
        def remap_surveys():
            return [wide]
    """
    make_dist("lazy-dist", {"lazy_pkg.py": source}, {"lazy": "lazy_pkg"})
    install_toy_package = DOCS_EXAMPLE / "remap_toy_survey"
    files = {f"remap_toy_survey/{p.name}": p.read_text(encoding="utf-8")
             for p in install_toy_package.glob("*.py")}
    make_dist("remap-toy-survey", files, {"toy": "remap_toy_survey.plugin"})
    assert remap.get_survey("toy").wavelength_medium == "vacuum"
    assert remap.get_survey("toy_air").wavelength_medium == "air"


def test_a_plugin_module_may_look_up_a_builtin_while_it_is_imported(make_dist):
    source = """
        import remap

        # at import time: the manager being built already holds the built-ins
        GRID = remap.get_survey("marvels").grid("B")


        class RedHalf:
            name = "red_half"

            def __init__(self, **options):
                self.grid = GRID


        @remap.hookimpl
        def remap_surveys():
            return [RedHalf]
    """
    make_dist("import-dist", {"import_pkg.py": source}, {"imp": "import_pkg"})
    assert remap.get_survey("red_half").grid[0] == 5280 * u.AA
    assert get_plugin_manager() is get_plugin_manager()


def test_builtins_come_from_the_in_code_list(fresh_plugins):
    from remap.plugins import BUILTIN_PLUGINS

    pm = get_plugin_manager()
    version = importlib.metadata.version("remap")
    for name, module in BUILTIN_PLUGINS:
        assert pm.get_plugin(name) is sys.modules[module]
        assert pm.distribution_of(name) == ("remap", version)
    # remap's own metadata declares no built-in entry points any more
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[1] / "setup.cfg", encoding="utf-8")
    assert "remap.plugins" not in config["options.entry_points"]
    assert "remap" in config["options.entry_points"]["console_scripts"]
    # blocked like any plugin, by name
    pm = get_plugin_manager(blocked=["heads", "continuum"])
    assert pm.get_plugin("heads") is None and pm.is_blocked("heads")
    assert plugin_infos("head", pm) == [] and plugin_infos("continuum", pm) == []
    assert [i.name for i in plugin_infos("survey", pm)] == ["marvels"]


def test_plugins_command_shows_distribution_and_version(make_dist):
    install_toy(make_dist, version="0.3.1")
    result = CliRunner().invoke(cli, ["plugins", "--kind", "survey"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("toy "))
    assert "toy-remap-plugin 0.3.1" in line
    assert "[plugin toy]" in line
    assert "toy survey from toy-remap-plugin" in line
    assert "Network heads" not in result.output  # --kind filters


def _remap_executable():
    script = Path(sys.executable).with_name("remap")
    if script.exists():
        return [str(script)]
    found = shutil.which("remap")
    if found is None:
        pytest.skip("the remap console script is not installed")
    return [found]


def test_plugins_command_in_a_fresh_process(make_dist, tmp_path):
    site = install_toy(make_dist)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(site)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("REMAP_BLOCK_PLUGINS", None)
    proc = subprocess.run(_remap_executable() + ["plugins"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "toy-remap-plugin 0.1" in proc.stdout
    assert "Surveys (remap_surveys):" in proc.stdout
    assert re.search(r"^  teff +remap \S+  \[plugin heads\]", proc.stdout, re.M)  # built-ins too


def test_duplicate_object_names_name_both_distributions(make_dist):
    install_toy(make_dist, dist="first-dist", package="first_pkg", entry_point="first")
    install_toy(make_dist, dist="second-dist", package="second_pkg", entry_point="second")
    with pytest.raises(DuplicatePluginError) as excinfo:
        remap.get_survey("toy")
    message = str(excinfo.value)
    assert "'toy'" in message
    assert "first-dist 0.1" in message and "second-dist 0.1" in message
    # blocking one of the two entry points resolves the clash
    reset_plugin_manager()
    pm = get_plugin_manager(blocked=["second"])
    infos = {i.name: i for i in plugin_infos("survey", pm)}
    assert infos["toy"].distribution == "first-dist"


def test_duplicate_entry_point_names_name_both_distributions(make_dist):
    install_toy(make_dist, dist="first-dist", package="first_pkg", name="one")
    install_toy(make_dist, dist="second-dist", package="second_pkg", name="two")
    with pytest.raises(DuplicatePluginError) as excinfo:
        get_plugin_manager()
    message = str(excinfo.value)
    assert "entry point 'toy'" in message
    assert "'first-dist'" in message and "'second-dist'" in message
    # blocking that name loads neither, and is not an error
    pm = get_plugin_manager(blocked=["toy"])
    names = [i.name for i in plugin_infos("survey", pm)]
    assert "one" not in names and "two" not in names


def test_entry_point_clashing_with_a_builtin(make_dist):
    install_toy(make_dist, dist="evil-dist", package="evil_pkg", entry_point="heads")
    with pytest.raises(DuplicatePluginError) as excinfo:
        get_plugin_manager()
    message = str(excinfo.value)
    assert "'heads'" in message and "'remap'" in message and "'evil-dist'" in message


def test_blocking_a_builtin_through_the_environment(fresh_plugins, monkeypatch):
    assert "marvels" in remap.list_surveys()
    monkeypatch.setenv("REMAP_BLOCK_PLUGINS", " marvels , nonexistent")
    assert "marvels" not in remap.list_surveys()
    assert get_plugin_manager().is_blocked("marvels")
    assert "teff" in remap.list_heads()  # other built-ins are unaffected
    with pytest.raises(UnknownPluginError, match="unknown survey 'marvels'"):
        remap.get_survey("marvels")


def test_blocking_a_third_party_plugin(make_dist, monkeypatch):
    install_toy(make_dist)
    monkeypatch.setenv("REMAP_BLOCK_PLUGINS", "toy")
    assert "toy" not in remap.list_surveys()
    assert "toy_remap_plugin.plugin" not in sys.modules  # never imported at all
    monkeypatch.setenv("REMAP_BLOCK_PLUGINS", "")
    assert "toy" in remap.list_surveys()
    assert "toy_remap_plugin.plugin" in sys.modules


def test_unknown_name_lists_the_known_ones(make_dist):
    install_toy(make_dist)
    with pytest.raises(UnknownPluginError) as excinfo:
        remap.get_survey("toyy")
    message = str(excinfo.value)
    assert "unknown survey 'toyy'" in message
    assert "toy" in message.split("known survey plugins:")[1]
    assert "remap plugins" in message
    with pytest.raises(KeyError):  # UnknownPluginError is also a KeyError
        remap.get_head("nope")


def test_unknown_kind_is_refused(fresh_plugins):
    with pytest.raises(ValueError, match="unknown plugin kind 'surveys'"):
        plugin_infos("surveys")


@pytest.mark.parametrize("body, match", [
    ("return 42", "must return a list of plugin factories, got int"),
    ("return [object()]", "has no string attribute 'name'"),
    ("return 'marvels'", "must return a list of plugin factories, got str"),
    ("raise RuntimeError('database offline')", "failed: RuntimeError: database offline"),
])
def test_garbage_from_a_plugin_is_a_plugin_error(make_dist, body, match):
    source = f"""
        from remap import hookimpl

        @hookimpl
        def remap_surveys():
            {body}
    """
    make_dist("junk-dist", {"junk_pkg.py": source}, {"junk": "junk_pkg"}, version="2.0")
    with pytest.raises(PluginError, match=match) as excinfo:
        remap.list_surveys()
    assert "'junk'" in str(excinfo.value)


def test_plugin_that_fails_to_import(make_dist):
    make_dist("broken-dist", {"broken_pkg.py": "import numpy\nimport not_a_real_module_xyz\n"},
              {"broken": "broken_pkg"})
    with pytest.raises(PluginError) as excinfo:
        get_plugin_manager()
    message = str(excinfo.value)
    assert "'broken'" in message and "'broken-dist'" in message
    assert "not_a_real_module_xyz" in message
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)


def test_entry_point_to_a_missing_module(make_dist):
    make_dist("ghost-dist", {"ghost_readme.py": ""}, {"ghost": "ghost_pkg.plugin"})
    with pytest.raises(PluginError, match="cannot load remap plugin 'ghost'"):
        get_plugin_manager()


def test_typo_in_hook_name_is_caught(make_dist):
    source = """
        from remap import hookimpl

        @hookimpl
        def remap_survey():
            return []
    """
    make_dist("typo-dist", {"typo_pkg.py": source}, {"typo": "typo_pkg"})
    with pytest.raises(PluginError) as excinfo:
        get_plugin_manager()
    message = str(excinfo.value)
    assert "remap_survey" in message and "'typo'" in message and "'typo-dist'" in message
    assert "remap_surveys" in message  # the valid names are listed


def test_hook_with_unexpected_arguments_is_refused(make_dist):
    source = """
        from remap import hookimpl

        @hookimpl
        def remap_surveys(config):
            return []
    """
    make_dist("args-dist", {"args_pkg.py": source}, {"args": "args_pkg"})
    with pytest.raises(PluginError, match="'args'.*'args-dist'.*config"):
        get_plugin_manager()


def test_runtime_registration_is_reported_as_such(fresh_plugins):
    pm = get_plugin_manager()
    pm.register(runtime_survey_plugin(Extra), name="runtime-extra")
    info = {i.name: i for i in plugin_infos("survey")}["extra"]
    assert info.source == "<runtime>" and info.plugin == "runtime-extra"


def test_plugin_manager_is_cached_until_reset(fresh_plugins):
    pm = get_plugin_manager()
    assert get_plugin_manager() is pm
    reset_plugin_manager()
    assert get_plugin_manager() is not pm


def test_documented_example_plugin(make_dist):
    """The survey plugin shown in docs/plugins.rst works when installed."""
    project = tomllib.loads((DOCS_EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    entry_points = project["project"]["entry-points"]["remap.plugins"]
    package = DOCS_EXAMPLE / "remap_toy_survey"
    files = {f"remap_toy_survey/{p.name}": p.read_text(encoding="utf-8")
             for p in package.glob("*.py")}
    make_dist(project["project"]["name"], files, entry_points,
              version=project["project"]["version"])

    infos = {i.name: i for i in plugin_infos("survey")}
    assert infos["toy"].distribution == project["project"]["name"]
    survey = remap.get_survey("toy")
    assert isinstance(survey, remap.surveys.Survey)
    assert list(survey.beams) == ["blue", "red"]
    assert u.allclose(np.diff(survey.grid("red")), 0.3 * u.AA)
    # the example survey splits a spectrum like any built-in one
    wave = np.linspace(4500, 5500, 2001) * u.AA
    spectrum = Spectrum(flux=np.ones(wave.size) * u.Jy, spectral_axis=wave)
    beams = survey.split(spectrum)
    assert list(beams) == ["blue", "red"]
    assert beams["blue"].meta["survey"] == "toy"
    assert beams["red"].spectral_axis.min() >= 5000 * u.AA
    # its second survey derives from the built-in MARVELS inside the hook
    blue = remap.get_survey("marvels_blue", wavelength_medium="vacuum")
    assert list(blue.beams) == ["A"] and blue.wavelength_medium == "vacuum"
    assert blue.beams["A"] == remap.get_survey("marvels").beams["A"]
    assert infos["marvels_blue"].plugin == "toy"


@pytest.mark.parametrize("wave_range", [(5170 * u.AA, 517.5 * u.nm), (5170, 5175) * u.AA,
                                        [5170 * u.AA, 5175 * u.AA]])
def test_quantity_pairs_wherever_a_wavelength_range_is(fresh_plugins, wave_range):
    lib = remap.get_library("linelist", wave_range=wave_range)
    assert lib.wavelength[0] == 5170 * u.AA and lib.wavelength[-1] <= 5175 * u.AA
    assert u.allclose(lib.wavelength_range[1], 5175 * u.AA, atol=0.01 * u.AA)
    beam = remap.surveys.Beam.from_range("A", wave_range, resolution=11000,
                                         resolution_range=(10000, 12000), sampling=0.1 * u.AA)
    assert u.allclose(beam.wave_range, [5170, 5175] * u.AA) and beam.npix == 51
    survey = remap.surveys.Survey(beams={"A": beam})
    assert u.allclose(survey.grid("A")[[0, -1]], [5170, 5175] * u.AA)


def test_bad_wavelength_ranges_are_refused(fresh_plugins):
    with pytest.raises(TypeError, match="wave_range must be wavelengths with units"):
        remap.get_library("linelist", wave_range=(5170, 5175))
    with pytest.raises(ValueError, match="unit s, which is not spectral"):
        remap.get_library("linelist", wave_range=(5170 * u.AA, 5 * u.s))
    with pytest.raises(ValueError, match="beyond the line list"):
        remap.get_library("linelist", wave_range=(4500 * u.AA, 5000 * u.AA))
    with pytest.raises(ValueError, match=r"beam 'A' wave_range must be a \(min, max\) pair "
                                         r"with min < max"):
        remap.surveys.Beam.from_range("A", (5300, 5200) * u.AA, resolution=11000,
                                      resolution_range=(10000, 12000), sampling=0.1 * u.AA)
