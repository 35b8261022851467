"""Keeps ``pytest experiments`` (and ``make experiment``) to the default study.

``experiments/next_steps/`` is a second study with its own config (see its conftest.py); it is
collected only when a path inside it is named on the command line (``pytest experiments/next_steps``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

OWN_STUDIES = ("next_steps",)
HERE = Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip a sub-study directory unless a command-line argument points into it."""
    path = Path(collection_path).resolve()
    if path.parent != HERE or path.name not in OWN_STUDIES:
        return None
    for arg in config.args:
        target = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if target == path or path in target.parents:
            return None
    return True
