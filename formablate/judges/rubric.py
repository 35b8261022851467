"""The offline rubric judge: deterministic 1-5 scores from programmatic checks. No model, no API.

Every eval prompt carries machine-checkable constraints and a reference answer.
The judge runs every constraint (:mod:`formablate.judges.checks`; Python code in the
sandbox), measures a few signals of the output (length against the reference,
slop phrases, refusal and abstention lexicons, repeated trigrams, code fences)
and derives six scores, all oriented so that 5 is best. ``scale(f)`` below is
``1 + round(4 f)`` (halves round up), mapping a pass share ``f`` in [0, 1] to 1-5.

correctness
    Over the content constraints (python_tests, final_answer, json_expected,
    contains, contains_any, abstain): ``scale(share passed)``, capped at 2 when a
    decisive one fails (python_tests, final_answer, json_expected, abstain: the
    answer is wrong however much else is right). A prompt without content
    constraints falls back to the share of the reference's distinct content words
    the output contains (>= .5 -> 5, .35 -> 4, .2 -> 3, .1 -> 2, else 1), a weak
    proxy stated in the evidence.
instruction_following
    ``scale(share of all the prompt's constraints passed)``: every constraint is a
    rule the prompt states or implies.
format
    ``scale(share passed)`` over the shape constraints (json_only, json_schema,
    no_code_fence, bullet_count, max_lines, letter_case, starts_with, ends_with,
    regex, identifier_style), 5 when there are none; minus 1 for an unclosed code
    fence; minus 1 when the prompt expects Python and the output has no code that
    parses.
concision
    Output words against a budget built from the reference's words ``r``:
    ``<= 1.5r+10`` -> 5, ``<= 2r+15`` -> 4, ``<= 3r+20`` -> 3, ``<= 5r+30`` -> 2, else 1;
    capped at 2 when a max_words / max_sentences / max_lines limit fails; minus 1
    for any slop phrase (minus 2 for three or more).
usefulness
    ``round((correctness + instruction_following) / 2)``, minus 2 for a refusal
    (on a prompt that does not ask to abstain) and minus 1 (repeated-trigram share
    > .3) or 2 (> .5) for looping output of at least 20 trigrams.
hallucination_risk (5 = no sign of hallucination)
    Prompts with an abstain constraint: 5 when the output says the fact is unknown
    or unrecorded, else 1 when it gives a specific answer (a number or a proper
    name) and 2 otherwise. Prompts with final_answer: 5 when right, 4 when the
    output honestly says it does not know, refuses, or makes no specific claim (no
    number or proper name), else 2 (factual) or 3 (other categories: a wrong
    result is more often an error than an invention). Code
    whose tests fail with ImportError/ModuleNotFoundError/AttributeError (an
    invented API) is capped at 2, with NameError at 3. In extraction categories
    (gamefaq, json), a number in the output that appears neither in the prompt nor
    in the reference caps the score at 3. Otherwise 5.
overall
    Weighted mean: correctness .30, instruction_following .20, usefulness .20,
    format .10, concision .10, hallucination_risk .10; two decimals.

A judgment is unscored (never scored as a number) when there is no output (a
failed generation), a constraint cannot be checked (a data bug), or the sandbox
itself failed to start. ``compare`` derives a pairwise verdict from the two
pointwise judgments: the higher overall wins unless the two are within
``tie_margin``; it is computed in both presentation orders and a disagreement
would count as a tie (the rule LLM judges follow; here the logic is symmetric).
"""

from __future__ import annotations

import ast
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

from formablate.data.schema import EvalPrompt
from formablate.judges.checks import ConstraintError, check_all, numbers_in
from formablate.judges.extract import extract_code, fences_balanced
from formablate.judges.records import DIMENSIONS, CheckResult, Judgment, OrderVerdict, PairwiseJudgment, Scores
from formablate.metrics.refusal import REFUSAL_VERSION, abstention, refusal
from formablate.metrics.repetition import repetition, word_tokens
from formablate.metrics.slop import SLOP_VERSION, slop
from formablate.sandbox import BOOTSTRAP_VERSION, SandboxOptions

__all__ = ["RubricJudge", "JUDGE_ID", "JUDGE_VERSION", "WEIGHTS", "reference_recall", "compare_judgments"]

JUDGE_ID = "rubric"
JUDGE_VERSION = f"rubric-1.0+{SLOP_VERSION}+{REFUSAL_VERSION}+{BOOTSTRAP_VERSION}"

WEIGHTS: dict[str, float] = {
    "correctness": 0.30,
    "instruction_following": 0.20,
    "usefulness": 0.20,
    "format": 0.10,
    "concision": 0.10,
    "hallucination_risk": 0.10,
}
assert set(WEIGHTS) == set(DIMENSIONS) and abs(sum(WEIGHTS.values()) - 1) < 1e-9, WEIGHTS

CONTENT_KINDS = frozenset({"python_tests", "final_answer", "json_expected", "contains", "contains_any", "abstain"})
DECISIVE_KINDS = frozenset({"python_tests", "final_answer", "json_expected", "abstain"})
FORMAT_KINDS = frozenset(
    {"json_only", "json_schema", "no_code_fence", "bullet_count", "max_lines", "letter_case", "starts_with",
     "ends_with", "regex", "identifier_style"}
)
LIMIT_KINDS = frozenset({"max_words", "max_sentences", "max_lines"})
GROUNDED_CATEGORIES = frozenset({"gamefaq", "json"})

_STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those there their they them he she his her we you your i me my our not no so than then too very can "
    "will would should could do does did has have had into out up down over about which who whom what when where "
    "why how all any each other some such only own same just also".split()
)


def _scale(share: float) -> int:
    return 1 + int(4 * share + 0.5)


def _clamp(score: int) -> int:
    return max(1, min(5, score))


def reference_recall(output: str, reference: str) -> float:
    """Share of the reference's distinct content words (not stopwords) that the output contains."""
    ref = {w for w in word_tokens(reference) if w not in _STOPWORDS}
    if not ref:
        return 1.0 if output.strip() else 0.0
    out = set(word_tokens(output))
    return len(ref & out) / len(ref)


def _specific_claim(text: str) -> bool:
    # A number, or a capitalised word that does not start a sentence (a proper name), reads as a specific claim.
    if numbers_in(text):
        return True
    sentence_start = True
    for tok in re.findall(r"[A-Za-z][A-Za-z'\u2019-]*|[.!?:\n]", text):
        if tok in ".!?:\n":
            sentence_start = True
            continue
        if tok[0].isupper() and not sentence_start and tok.split("'")[0].split("\u2019")[0] != "I":
            return True
        sentence_start = False
    return False


class RubricJudge:
    """Deterministic offline judge; see the module docstring for how each score is derived."""

    judge_id = JUDGE_ID
    judge_version = JUDGE_VERSION

    def __init__(self, *, sandbox: SandboxOptions | None = None, tie_margin: float = 0.25):
        """``sandbox`` sets limits for python_tests; ``tie_margin`` is the overall-score gap below which a pair ties."""
        if not 0 <= tie_margin < 4:
            raise ValueError(f"tie_margin={tie_margin!r} must be in [0, 4)")
        self.sandbox = sandbox
        self.tie_margin = tie_margin

    # -- pointwise ---------------------------------------------------------------------------------

    def _unscored(self, prompt: EvalPrompt, model: str, reason: str, checks=(), evidence=None) -> Judgment:
        return Judgment(
            prompt_id=prompt.id, model=model, judge_id=self.judge_id, judge_version=self.judge_version,
            category=prompt.category, scores=None, overall=None, unscored_reason=reason,
            checks=list(checks), evidence=evidence or {},
        )

    def judge(self, prompt: EvalPrompt, output: str | None, model: str) -> Judgment:
        """Score one output for one prompt; a failed generation (``None``) is recorded unscored."""
        if output is None:
            return self._unscored(prompt, model, "no output: generation failed")
        try:
            checks = check_all(prompt.constraints, output, sandbox=self.sandbox)
        except ConstraintError as exc:
            return self._unscored(prompt, model, f"constraint cannot be checked (data bug): {exc}")
        broken = [r for r in checks if r.detail.get("infrastructure_error")]
        if broken:
            return self._unscored(prompt, model, f"sandbox failed to run: {broken[0].reason}", checks)
        scores, evidence = self._score(prompt, output, checks)
        overall = round(sum(WEIGHTS[d] * getattr(scores, d) for d in DIMENSIONS), 2)
        return Judgment(
            prompt_id=prompt.id, model=model, judge_id=self.judge_id, judge_version=self.judge_version,
            category=prompt.category, scores=scores, overall=overall, checks=checks, evidence=evidence,
        )

    def judge_many(
        self, items: Iterable[tuple[EvalPrompt, str | None, str]], workers: int = 2
    ) -> list[Judgment]:
        """Judge ``(prompt, output, model)`` items, in order, ``workers`` at a time (code runs dominate)."""
        items = list(items)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(lambda it: self.judge(*it), items))

    def _score(self, prompt: EvalPrompt, output: str, checks: list[CheckResult]) -> tuple[Scores, dict]:
        notes: dict[str, str] = {}
        words = len(output.split())
        ref_words = len(prompt.reference.split())
        sl = slop(output)
        ref_sig = refusal(output)
        abst = abstention(output)
        rep = repetition(output)
        recall = reference_recall(output, prompt.reference)
        kinds = {c.kind for c in prompt.constraints}
        evidence: dict = {
            "output_sha256": hashlib.sha256(output.encode("utf-8")).hexdigest(),
            "words": words,
            "reference_words": ref_words,
            "reference_recall": round(recall, 4),
            "slop": sl.model_dump(),
            "refusal": ref_sig.model_dump(),
            "abstention": abst.model_dump(),
            "repetition": rep.model_dump(),
            "weights": WEIGHTS,
        }
        if not output.strip():
            notes = {d: "empty output" for d in DIMENSIONS}
            evidence["notes"] = notes
            return Scores(**{d: 1 for d in DIMENSIONS}), evidence

        # correctness
        content = [r for r in checks if r.kind in CONTENT_KINDS]
        if content:
            passed = sum(r.passed for r in content)
            correctness = _scale(passed / len(content))
            notes["correctness"] = f"{passed}/{len(content)} content checks pass"
            failed_decisive = [r.kind for r in content if not r.passed and r.kind in DECISIVE_KINDS]
            if failed_decisive:
                correctness = min(correctness, 2)
                notes["correctness"] += f"; decisive check failed ({', '.join(failed_decisive)}): capped at 2"
        else:
            correctness = next(s for bar, s in ((0.5, 5), (0.35, 4), (0.2, 3), (0.1, 2), (0.0, 1)) if recall >= bar)
            notes["correctness"] = f"no content checks; reference content-word recall {recall:.2f} (weak proxy)"

        # instruction following
        passed_all = sum(r.passed for r in checks)
        instruction = _scale(passed_all / len(checks))
        notes["instruction_following"] = f"{passed_all}/{len(checks)} constraints pass"

        # format
        fmt = [r for r in checks if r.kind in FORMAT_KINDS]
        fmt_score = _scale(sum(r.passed for r in fmt) / len(fmt)) if fmt else 5
        notes["format"] = f"{sum(r.passed for r in fmt)}/{len(fmt)} format checks pass" if fmt else "no format checks"
        balanced = fences_balanced(output)
        evidence["fences_balanced"] = balanced
        if not balanced:
            fmt_score -= 1
            notes["format"] += "; unclosed code fence (-1)"
        if kinds & {"python_tests", "identifier_style"}:
            code, how = extract_code(output)
            parses = code is not None and _parses(code)
            evidence["code_extraction"] = how
            evidence["code_parses"] = parses
            if not parses:
                fmt_score -= 1
                notes["format"] += "; no Python code that parses (-1)"
        format_ = _clamp(fmt_score)

        # concision
        tiers = ((1.5, 10, 5), (2, 15, 4), (3, 20, 3), (5, 30, 2))
        concision = next((s for k, add, s in tiers if words <= k * ref_words + add), 1)
        notes["concision"] = f"{words} words vs reference {ref_words}"
        failed_limits = [r.kind for r in checks if r.kind in LIMIT_KINDS and not r.passed]
        if failed_limits:
            concision = min(concision, 2)
            notes["concision"] += f"; length limit failed ({', '.join(failed_limits)}): capped at 2"
        if sl.hits:
            concision -= 2 if sl.hits >= 3 else 1
            notes["concision"] += f"; {sl.hits} slop phrase(s)"
        concision = _clamp(concision)

        # usefulness
        usefulness = int((correctness + instruction) / 2 + 0.5)
        notes["usefulness"] = f"mean of correctness and instruction following = {usefulness}"
        if ref_sig.detected and "abstain" not in kinds:
            usefulness -= 2
            notes["usefulness"] += "; refusal (-2)"
        if rep.ngrams >= 20 and rep.rate > 0.3:
            usefulness -= 2 if rep.rate > 0.5 else 1
            notes["usefulness"] += f"; repeated-trigram share {rep.rate:.2f}"
        usefulness = _clamp(usefulness)

        hallucination, why = self._hallucination(prompt, output, checks, abst.detected, ref_sig.detected, evidence)
        notes["hallucination_risk"] = why
        evidence["notes"] = notes
        scores = Scores(
            correctness=correctness, instruction_following=instruction, format=format_,
            concision=concision, usefulness=usefulness, hallucination_risk=hallucination,
        )
        return scores, evidence

    def _hallucination(
        self, prompt: EvalPrompt, output: str, checks: list[CheckResult], abstained: bool, refused: bool,
        evidence: dict,
    ) -> tuple[int, str]:
        by_kind = {r.kind: r for r in checks}
        if "abstain" in by_kind:
            if by_kind["abstain"].passed:
                score, why = 5, "says the unknowable fact is unknown"
            elif _specific_claim(output):
                score, why = 1, "confident specific answer to an unknowable question"
            else:
                score, why = 2, "answers an unknowable question without saying it is unknown"
        elif "final_answer" in by_kind:
            fa = by_kind["final_answer"]
            if fa.passed and fa.detail.get("mode") != "abstained":
                score, why = 5, "final answer is right"
            elif fa.passed or abstained:
                score, why = 4, "says it does not know"
            elif refused or not _specific_claim(output):
                score, why = 4, "wrong or missing answer, but no specific claim (declined or vague)"
            elif prompt.category == "factual":
                score, why = 2, "states a wrong fact"
            else:
                score, why = 3, "states a wrong result"
        else:
            score, why = 5, "no hallucination signal"
        tests = by_kind.get("python_tests")
        if tests is not None and not tests.passed:
            err = tests.detail.get("error_type")
            if err in {"ImportError", "ModuleNotFoundError", "AttributeError"} and score > 2:
                score, why = 2, f"code fails with {err} (invented or missing API)"
            elif err == "NameError" and score > 3:
                score, why = 3, "code fails with NameError (undefined name)"
        if prompt.category in GROUNDED_CATEGORIES:
            known = set(numbers_in(" ".join(m.content for m in prompt.messages) + " " + prompt.reference))
            unsupported = sorted({n for n in numbers_in(output) if n not in known})
            evidence["unsupported_numbers"] = unsupported[:10]
            if unsupported and score > 3:
                score, why = 3, f"numbers not in the prompt or reference: {unsupported[:5]}"
        return score, why

    # -- pairwise ----------------------------------------------------------------------------------

    def compare(
        self, prompt: EvalPrompt, output_a: str | None, output_b: str | None, model_a: str = "a", model_b: str = "b"
    ) -> PairwiseJudgment:
        """Judge both outputs and compare them (see :func:`compare_judgments`)."""
        return compare_judgments(
            self.judge(prompt, output_a, model_a), self.judge(prompt, output_b, model_b), tie_margin=self.tie_margin
        )


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _decide(first: Judgment, second: Judgment, margin: float) -> str:
    assert first.overall is not None and second.overall is not None
    diff = first.overall - second.overall
    if abs(diff) < margin or diff == 0:
        return "tie"
    return "first" if diff > 0 else "second"


def compare_judgments(a: Judgment, b: Judgment, *, tie_margin: float = 0.25) -> PairwiseJudgment:
    """Pairwise verdict from two pointwise judgments of the same prompt by the same judge.

    The higher overall score wins unless the gap is below ``tie_margin``. The decision is
    made in both presentation orders; if they disagreed the outcome would be a tie.
    """
    if a.prompt_id != b.prompt_id or a.judge_id != b.judge_id or a.judge_version != b.judge_version:
        raise ValueError(
            f"cannot compare judgments of different prompts or judges: {a.prompt_id!r}/{a.judge_id!r}/"
            f"{a.judge_version!r} vs {b.prompt_id!r}/{b.judge_id!r}/{b.judge_version!r}"
        )
    base = dict(prompt_id=a.prompt_id, model_a=a.model, model_b=b.model, judge_id=a.judge_id,
                judge_version=a.judge_version, category=a.category)
    if not a.scored or not b.scored:
        why = "; ".join(f"{j.model}: {j.unscored_reason}" for j in (a, b) if not j.scored)
        return PairwiseJudgment(**base, outcome=None, unscored_reason=f"unscored judgment(s): {why}")
    ab = {"first": "a", "second": "b", "tie": "tie"}[_decide(a, b, tie_margin)]
    ba = {"first": "b", "second": "a", "tie": "tie"}[_decide(b, a, tie_margin)]
    consistent = ab == ba
    assert a.scores is not None and b.scores is not None
    return PairwiseJudgment(
        **base,
        outcome=ab if consistent else "tie",
        orders=[OrderVerdict(order="ab", winner=ab), OrderVerdict(order="ba", winner=ba)],
        consistent=consistent,
        evidence={
            "overall_a": a.overall,
            "overall_b": b.overall,
            "tie_margin": tie_margin,
            "dimension_diff": {d: getattr(a.scores, d) - getattr(b.scores, d) for d in DIMENSIONS},
            "checks_passed_a": sum(r.passed for r in a.checks),
            "checks_passed_b": sum(r.passed for r in b.checks),
        },
    )
