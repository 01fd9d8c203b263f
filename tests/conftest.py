"""Shared fixtures: a fresh plugin manager, and throwaway installed distributions.

`make_dist` writes a real (if tiny) installed distribution into a temporary
site directory: the plugin package plus a ``NAME-VERSION.dist-info`` folder with
``METADATA`` and ``entry_points.txt``.  Prepending that directory to
``sys.path`` makes :func:`importlib.metadata.distributions` find it, exactly as
it would find a distribution installed with pip, so the tests exercise remap's
real entry-point discovery.
"""

import sys
import textwrap

import pytest

from remap.plugins import ENTRY_POINT_GROUP, reset_plugin_manager


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager rebuilt from scratch for this test, and again after it."""
    monkeypatch.delenv("REMAP_BLOCK_PLUGINS", raising=False)
    reset_plugin_manager()
    yield
    reset_plugin_manager()


@pytest.fixture
def make_dist(tmp_path, monkeypatch, fresh_plugins):
    """Factory installing a throwaway distribution that declares ``remap.plugins`` entry points.

    Call it as ``make_dist(dist_name, files, entry_points, version="0.1")``:
    ``files`` maps paths relative to the site directory to source text (dedented),
    ``entry_points`` maps entry-point names to ``module[:attr]`` values.  Each
    call gets its own site directory, which is put in front of ``sys.path``; the
    site directory is returned.  Modules imported from it are removed from
    ``sys.modules`` at teardown so later tests import fresh copies.
    """
    top_levels = set()
    counter = [0]

    def make(dist_name, files, entry_points, version="0.1"):
        counter[0] += 1
        site = tmp_path / f"site{counter[0]}"
        site.mkdir()
        for rel, text in files.items():
            path = site / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
            top_levels.add(rel.split("/")[0].removesuffix(".py"))
        info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8")
        lines = [f"[{ENTRY_POINT_GROUP}]"]
        lines += [f"{name} = {value}" for name, value in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (info / "top_level.txt").write_text(
            "\n".join(sorted({r.split("/")[0].removesuffix(".py") for r in files})) + "\n",
            encoding="utf-8")
        monkeypatch.syspath_prepend(str(site))
        reset_plugin_manager()
        return site

    yield make
    for mod in list(sys.modules):
        if mod.split(".")[0] in top_levels:
            del sys.modules[mod]
