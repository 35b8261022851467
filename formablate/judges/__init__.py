"""Judges of model outputs: the shared judgment schema, constraint checks and the offline rubric judge."""

from formablate.judges.checks import ConstraintError, check, check_all, run_python_tests
from formablate.judges.extract import extract_code, extract_json
from formablate.judges.records import DIMENSIONS, CheckResult, Judgment, OrderVerdict, PairwiseJudgment, Scores
from formablate.judges.rubric import JUDGE_ID, JUDGE_VERSION, RubricJudge, compare_judgments

__all__ = [
    "DIMENSIONS",
    "JUDGE_ID",
    "JUDGE_VERSION",
    "CheckResult",
    "ConstraintError",
    "Judgment",
    "OrderVerdict",
    "PairwiseJudgment",
    "RubricJudge",
    "Scores",
    "check",
    "check_all",
    "compare_judgments",
    "extract_code",
    "extract_json",
    "run_python_tests",
]
