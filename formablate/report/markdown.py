"""The Markdown report, rendered from the shared context with ``templates/report.md.jinja``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["render_markdown", "md_cell", "md_output", "fence"]

TEMPLATES = Path(__file__).parent / "templates"


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell or list item: pipes escaped, line breaks as <br>."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def md_output(value: Any) -> str:
    """Model output inside a Markdown table cell: control characters replaced, pipes, backticks and ``<`` escaped
    (so a reply can neither end the cell, open a code span nor become HTML), line breaks as <br>."""
    from formablate.report.samples import sanitize_text

    text = sanitize_text("" if value is None else str(value))
    return md_cell(text.replace("<", "&lt;")).replace("`", "\\`")


def fence(value: Any) -> str:
    """Text safe inside a ``` fence: a run of three backticks in model output would close it early."""
    return ("" if value is None else str(value)).replace("```", "`\u200b``")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,  # Markdown: cells are escaped by the `md` filter instead
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_cell
    env.filters["fence"] = fence
    env.filters["mdout"] = md_output
    return env


def render_markdown(context: dict[str, Any]) -> str:
    """The report as Markdown; images are referenced by the file names in ``context['images']``."""
    text = _environment().get_template("report.md.jinja").render(**context)
    # Collapse the blank-line runs the template's control blocks leave behind.
    # Model output inside ``` fences is left exactly as it is.
    lines, blank, in_fence = [], 0, False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence and not line.startswith("```"):
            lines.append(line)
            continue
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            lines.append(line.rstrip())
    return "\n".join(lines).strip() + "\n"
