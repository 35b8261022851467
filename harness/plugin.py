"""The harness pytest plugin (registered through the ``pytest11`` entry point).

Kept import-light: nothing heavy (torch, transformers) is imported at plugin
load, so `pytest -m dataset` and replay runs never pay for it.
"""

from __future__ import annotations

import pytest

from harness.config import DEFAULT_EXPERIMENT


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "SFT data-format experiment harness")
    group.addoption(
        "--experiment",
        default=None,
        help=f"experiment config YAML (default: {DEFAULT_EXPERIMENT})",
    )
    group.addoption(
        "--results",
        default=None,
        help="replay verdicts from a stored results JSON file; no model is loaded",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hypothesis(id, claim): an experiment hypothesis test (H1-H7)")
