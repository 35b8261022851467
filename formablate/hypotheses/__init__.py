"""Hypotheses: the ``@hypothesis`` decorator, evidence primitives, arm selection and the one decision rule.

Nothing here names a particular hypothesis, format or arm: hypotheses live in users' test files
(the shipped study's in ``experiments/test_h*.py``) and use the public API re-exported by
:mod:`formablate`.
"""

from formablate.hypotheses.decide import decide, family_p, judge_caps
from formablate.hypotheses.records import Component, Evaluation, Verdict, VerdictName
from formablate.hypotheses.registry import HypothesisDef, discover, family_order, hypothesis, hypothesis_of
from formablate.hypotheses.select import ArmKey, Selection, config_arm_keys, select_arms
from formablate.hypotheses.spec import DECISION_RULE, HypothesisSpec
from formablate.hypotheses.views import ArmView, PromptView, arm_views

__all__ = [
    "ArmKey",
    "ArmView",
    "Component",
    "DECISION_RULE",
    "Evaluation",
    "HypothesisDef",
    "HypothesisSpec",
    "PromptView",
    "Selection",
    "Verdict",
    "VerdictName",
    "arm_views",
    "config_arm_keys",
    "decide",
    "discover",
    "family_order",
    "family_p",
    "hypothesis",
    "hypothesis_of",
    "judge_caps",
    "select_arms",
]
