"""Sphinx directive ``.. remap-pipeline::``: the table of :func:`remap.fit`'s stages.

The table is generated from :data:`remap.inference.stages.DEFAULT_STAGES` (the
same tuple the pipeline is built from): per stage, in order, its name, class,
options with their defaults, the per-star columns it adds, and the first
paragraph of its docstring.  Adding a stage to the tuple adds its row here.
"""

from __future__ import annotations

import inspect

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _first_paragraph(cls):
    doc = inspect.cleandoc(cls.__doc__ or "")
    return " ".join(doc.split("\n\n")[0].split())


def stage_rows():
    """(name, class path, options, columns, summary) per stage of DEFAULT_STAGES."""
    from remap.inference.stages import DEFAULT_STAGES

    rows = []
    for cls in DEFAULT_STAGES:
        options = ", ".join(f"``{k}={v!r}``" for k, v in cls.OPTIONS.items()) or "--"
        columns = ", ".join(f"``{k}`` ({unit or 'no unit'})"
                            for k, (unit, _) in cls.COLUMNS.items()) or "--"
        rows.append((f"``{cls.name}``", f":class:`~{cls.__module__}.{cls.__qualname__}`",
                     options, columns, _first_paragraph(cls)))
    return rows


class RemapPipeline(SphinxDirective):
    """Insert the stage table (a list-table)."""

    has_content = False

    def run(self):
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 10 18 18 12 42", "",
                 "   * - stage", "     - class", "     - options", "     - columns",
                 "     - what it does"]
        for row in stage_rows():
            lines.append(f"   * - {row[0]}")
            lines.extend(f"     - {cell}" for cell in row[1:])
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="remap-pipeline"), self.content_offset,
                                container)
        return list(container.children)


def setup(app):
    app.add_directive("remap-pipeline", RemapPipeline)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
