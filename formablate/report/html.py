"""The self-contained HTML report: inline CSS, plots embedded as base64 PNG, no external files, fonts or scripts."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from formablate.report.markdown import TEMPLATES

__all__ = ["render_html"]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # model output is untrusted text: it must never become markup
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(context: dict[str, Any]) -> str:
    """The report as one HTML document (images inline from ``context['images'][...]['b64']``)."""
    return _environment().get_template("report.html.jinja").render(**context)
