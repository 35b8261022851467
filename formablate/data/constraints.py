"""Machine-checkable constraints, shared by training content and eval prompts.

A constraint is a small declarative record (``kind`` plus parameters). The same
records serve two purposes:

* the dataset validator checks every canonical answer against the constraints
  stated for it (a training answer that breaks its own "under 30 words" rule
  is a data bug);
* the rubric judge checks model outputs against an eval prompt's constraints.

The checking logic lives in :mod:`formablate.judges.checks`; this module only
defines the schema, so it can be imported without any heavy dependency.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Constraint",
    "CONSTRAINT_KINDS",
    "MaxWords",
    "MinWords",
    "MaxSentences",
    "MaxLines",
    "BulletCount",
    "Contains",
    "ContainsAny",
    "NotContains",
    "Regex",
    "StartsWith",
    "EndsWith",
    "LetterCase",
    "NoCodeFence",
    "JsonOnly",
    "JsonSchema",
    "JsonExpected",
    "PythonTests",
    "IdentifierStyle",
    "FinalAnswer",
    "Abstain",
]


class _C(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaxWords(_C):
    """The answer has at most ``n`` words (whitespace-separated tokens, code fences included)."""

    kind: Literal["max_words"] = "max_words"
    n: int = Field(ge=1, description="Largest allowed number of words.")


class MinWords(_C):
    """The answer has at least ``n`` words."""

    kind: Literal["min_words"] = "min_words"
    n: int = Field(ge=1, description="Smallest allowed number of words.")


class MaxSentences(_C):
    """The answer has at most ``n`` sentences (split on ., ! and ? followed by space or end)."""

    kind: Literal["max_sentences"] = "max_sentences"
    n: int = Field(ge=1, description="Largest allowed number of sentences.")


class MaxLines(_C):
    """The answer has at most ``n`` non-empty lines."""

    kind: Literal["max_lines"] = "max_lines"
    n: int = Field(ge=1, description="Largest allowed number of non-empty lines.")


class BulletCount(_C):
    """The answer has exactly ``n`` bullet lines (starting with '-', '*' or '1.' style numbering)."""

    kind: Literal["bullet_count"] = "bullet_count"
    n: int = Field(ge=1, description="Exact number of bullet or numbered lines.")


class Contains(_C):
    """The answer contains ``text`` (required content)."""

    kind: Literal["contains"] = "contains"
    text: str = Field(min_length=1, description="Text that must appear.")
    case_sensitive: bool = Field(False, description="Compare case-sensitively.")


class ContainsAny(_C):
    """The answer contains at least one of ``options`` (aliases of one required fact)."""

    kind: Literal["contains_any"] = "contains_any"
    options: list[str] = Field(min_length=1, description="Accepted spellings; any one suffices.")
    case_sensitive: bool = Field(False, description="Compare case-sensitively.")


class NotContains(_C):
    """The answer does not contain ``text`` (a forbidden word, phrase or filler)."""

    kind: Literal["not_contains"] = "not_contains"
    text: str = Field(min_length=1, description="Text that must not appear.")
    case_sensitive: bool = Field(False, description="Compare case-sensitively.")


class Regex(_C):
    """The answer matches ``pattern`` (Python ``re.search``; use ^...$ with flags for whole-answer rules)."""

    kind: Literal["regex"] = "regex"
    pattern: str = Field(min_length=1, description="Python regular expression.")
    flags: list[Literal["IGNORECASE", "MULTILINE", "DOTALL"]] = Field(
        default_factory=list, description="re flags to apply."
    )


class StartsWith(_C):
    """The stripped answer starts with ``text``."""

    kind: Literal["starts_with"] = "starts_with"
    text: str = Field(min_length=1, description="Required prefix.")


class EndsWith(_C):
    """The stripped answer ends with ``text``."""

    kind: Literal["ends_with"] = "ends_with"
    text: str = Field(min_length=1, description="Required suffix.")


class LetterCase(_C):
    """Every cased letter in the answer is lower case (or upper case)."""

    kind: Literal["letter_case"] = "letter_case"
    case: Literal["lower", "upper"] = Field(description="Required case.")


class NoCodeFence(_C):
    """The answer contains no Markdown code fence (```)."""

    kind: Literal["no_code_fence"] = "no_code_fence"


class JsonOnly(_C):
    """The whole stripped answer is one JSON value: no prose, no code fence."""

    kind: Literal["json_only"] = "json_only"


class JsonSchema(_C):
    """The JSON in the answer (the whole answer, else the first fenced or braced block) matches ``json_schema``.

    Supported JSON Schema subset: type, properties, required, additionalProperties (bool),
    items, enum, minItems, maxItems, minimum, maximum, minLength, maxLength.
    """

    kind: Literal["json_schema"] = "json_schema"
    json_schema: dict[str, Any] = Field(description="A JSON Schema in the supported subset.")


class JsonExpected(_C):
    """The JSON in the answer equals ``value`` (``match='exact'``) or contains it (``match='subset'``).

    Subset means: every key of an expected object is present with a matching value
    (recursively); an expected list matches a list of the same length element-wise
    (order-insensitive when ``unordered`` is true). Strings compare after trimming
    and, when ``case_sensitive`` is false, case-folding.
    """

    kind: Literal["json_expected"] = "json_expected"
    value: Any = Field(description="The expected JSON value.")
    match: Literal["exact", "subset"] = Field("exact", description="Whole-value equality or recursive subset.")
    unordered: bool = Field(False, description="Compare lists as multisets.")
    case_sensitive: bool = Field(True, description="Compare strings case-sensitively.")


class PythonTests(_C):
    """The Python code in the answer passes ``tests`` when run in the sandbox.

    The code is the first fenced ```python block of the answer, or the whole
    answer when it has no fence. ``tests`` is Python source (usually asserts)
    executed after the code in the same module. When ``original`` is given, the
    validator also runs ``tests`` against it, proving that a rewrite behaves as
    the original did (deobfuscation).
    """

    kind: Literal["python_tests"] = "python_tests"
    tests: str = Field(min_length=1, description="Python source run after the code; must raise on failure.")
    original: str | None = Field(None, description="Code the answer rewrites; tests must pass on it too.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Wall-clock limit for one run.")


class IdentifierStyle(_C):
    """Every function, variable and argument name the answer's Python code defines follows ``style``."""

    kind: Literal["identifier_style"] = "identifier_style"
    style: Literal["snake_case", "camelCase"] = Field(description="Required naming style.")


class FinalAnswer(_C):
    """The answer states ``value`` as its final answer.

    Numbers compare numerically within ``tolerance`` (the last number in the
    answer is taken as final); other values match the text or any ``aliases``
    case-insensitively, at word boundaries.
    """

    kind: Literal["final_answer"] = "final_answer"
    value: str = Field(min_length=1, description="The expected final answer.")
    aliases: list[str] = Field(default_factory=list, description="Other accepted spellings.")
    tolerance: float = Field(0.0, ge=0, description="Absolute tolerance for numeric answers.")
    idk_acceptable: bool = Field(False, description="An explicit 'I don't know' also passes.")


class Abstain(_C):
    """The right answer is to say the fact is unknown or unknowable ("I don't know", "no record")."""

    kind: Literal["abstain"] = "abstain"


Constraint = Annotated[
    Union[
        MaxWords,
        MinWords,
        MaxSentences,
        MaxLines,
        BulletCount,
        Contains,
        ContainsAny,
        NotContains,
        Regex,
        StartsWith,
        EndsWith,
        LetterCase,
        NoCodeFence,
        JsonOnly,
        JsonSchema,
        JsonExpected,
        PythonTests,
        IdentifierStyle,
        FinalAnswer,
        Abstain,
    ],
    Field(discriminator="kind"),
]

CONSTRAINT_KINDS: tuple[str, ...] = (
    "max_words",
    "min_words",
    "max_sentences",
    "max_lines",
    "bullet_count",
    "contains",
    "contains_any",
    "not_contains",
    "regex",
    "starts_with",
    "ends_with",
    "letter_case",
    "no_code_fence",
    "json_only",
    "json_schema",
    "json_expected",
    "python_tests",
    "identifier_style",
    "final_answer",
    "abstain",
)
