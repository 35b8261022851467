"""H1-H7: pre-registered specs, arm selection, evaluation and the one decision rule."""

from formablate.hypotheses.decide import decide, family_p, judge_caps
from formablate.hypotheses.evaluate import EVALUATORS, evaluate_hypothesis, loss_words
from formablate.hypotheses.records import Component, Evaluation, Verdict, VerdictName
from formablate.hypotheses.select import ArmKey, Selection, config_arm_keys, select_arms
from formablate.hypotheses.spec import (
    DECISION_RULE,
    HYPOTHESES,
    HYPOTHESIS_IDS,
    REQUIRED_ARMS,
    HypothesisSpec,
    Requirement,
    requires,
)
from formablate.hypotheses.views import ArmView, PromptView, arm_views

__all__ = [
    "ArmKey",
    "ArmView",
    "Component",
    "DECISION_RULE",
    "EVALUATORS",
    "Evaluation",
    "HYPOTHESES",
    "HYPOTHESIS_IDS",
    "HypothesisSpec",
    "PromptView",
    "REQUIRED_ARMS",
    "Requirement",
    "Selection",
    "Verdict",
    "VerdictName",
    "arm_views",
    "config_arm_keys",
    "decide",
    "evaluate_hypothesis",
    "family_p",
    "judge_caps",
    "loss_words",
    "requires",
    "select_arms",
]
