"""formablate: a pytest experiment harness for SFT data-format ablations on small language models.

The public hypothesis API: :func:`hypothesis` turns ``def test_x(data): return <evidence>`` into a
pre-registered hypothesis test; :func:`paired`, :func:`rank_correlation`, :func:`win_share`,
:func:`best_of` and :func:`all_of` build the evidence; ``data`` is a :class:`StudyData`. Importing this
module is light (no torch, no scipy until evidence is evaluated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from formablate.errors import HarnessError
from formablate.hypotheses.registry import hypothesis

if TYPE_CHECKING:
    from formablate.config import load_experiment
    from formablate.hypotheses.evidence import ArmRef, StudyData, all_of, best_of, paired, rank_correlation, win_share
    from formablate.hypotheses.records import Evaluation, Verdict

__all__ = [
    "ArmRef",
    "Evaluation",
    "HarnessError",
    "StudyData",
    "Verdict",
    "__version__",
    "all_of",
    "best_of",
    "hypothesis",
    "load_experiment",
    "paired",
    "rank_correlation",
    "win_share",
]
__version__ = "0.1.0"

_LAZY = {
    "ArmRef": "formablate.hypotheses.evidence",
    "StudyData": "formablate.hypotheses.evidence",
    "all_of": "formablate.hypotheses.evidence",
    "best_of": "formablate.hypotheses.evidence",
    "paired": "formablate.hypotheses.evidence",
    "rank_correlation": "formablate.hypotheses.evidence",
    "win_share": "formablate.hypotheses.evidence",
    "Evaluation": "formablate.hypotheses.records",
    "Verdict": "formablate.hypotheses.records",
    "load_experiment": "formablate.config",
}


def __getattr__(name: str) -> Any:
    """Import the evidence primitives on first use, so ``import formablate`` stays light."""
    if name in _LAZY:
        import importlib

        # not cached in this module's globals: the defining module is looked up each time, so a test
        # harness that unloads and re-imports modules (pytester in-process runs) never sees a stale class
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'formablate' has no attribute {name!r}")
