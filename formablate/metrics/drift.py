"""Length drift of a model's outputs against the base model's, paired by prompt.

Per prompt the drift is ``log2((len_model + 1) / (len_base + 1))``: 0 means the
same length, +1 twice as long, -1 half as long (the +1 keeps empty outputs
finite). The summary is the mean over prompts with a t interval, beside the
plain ratio of mean lengths and the number of pairs.
"""

from __future__ import annotations

import math
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MeanCI", "mean_ci", "LengthDrift", "length_drift"]


class MeanCI(BaseModel):
    """A mean with its t interval and n."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float | None = Field(description="Sample mean; None when n = 0.")
    sd: float | None = Field(description="Sample standard deviation (ddof=1); None when n < 2.")
    n: int = Field(ge=0, description="Number of values.")
    ci_low: float | None = Field(description="Lower end of the two-sided t interval; None when n < 2.")
    ci_high: float | None = Field(description="Upper end of the two-sided t interval; None when n < 2.")
    confidence: float = Field(0.95, description="Interval confidence level.")


def mean_ci(values: list[float], confidence: float = 0.95) -> MeanCI:
    """Mean of ``values`` with a two-sided Student-t interval (none for fewer than two values)."""
    n = len(values)
    if n == 0:
        return MeanCI(mean=None, sd=None, n=0, ci_low=None, ci_high=None, confidence=confidence)
    mean = math.fsum(values) / n
    if n < 2:
        return MeanCI(mean=mean, sd=None, n=1, ci_low=None, ci_high=None, confidence=confidence)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy import stats  # imported on use: scipy.stats costs ~1 s and the judges never need it

    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return MeanCI(mean=mean, sd=sd, n=n, ci_low=mean - half, ci_high=mean + half, confidence=confidence)


class LengthDrift(BaseModel):
    """Paired length drift of one model against the base."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log2_ratio: MeanCI = Field(description="Mean per-prompt log2((len+1)/(base_len+1)) with its interval.")
    ratio_of_means: float | None = Field(description="mean(model lengths) / mean(base lengths) over the pairs.")
    mean_length: float | None = Field(description="Mean model length over the pairs.")
    mean_base_length: float | None = Field(description="Mean base length over the pairs.")
    n_pairs: int = Field(ge=0, description="Prompts with an output from both.")
    unpaired: int = Field(ge=0, description="Prompts present for only one of the two (left out).")


def length_drift(lengths: Mapping[str, int], base_lengths: Mapping[str, int]) -> LengthDrift:
    """Drift of ``lengths`` (prompt id -> length) against ``base_lengths``, over the prompts both have."""
    common = sorted(set(lengths) & set(base_lengths))
    unpaired = len(set(lengths) ^ set(base_lengths))
    diffs = [math.log2((lengths[p] + 1) / (base_lengths[p] + 1)) for p in common]
    if not common:
        return LengthDrift(
            log2_ratio=mean_ci([]), ratio_of_means=None, mean_length=None, mean_base_length=None,
            n_pairs=0, unpaired=unpaired,
        )
    m = sum(lengths[p] for p in common) / len(common)
    b = sum(base_lengths[p] for p in common) / len(common)
    return LengthDrift(
        log2_ratio=mean_ci(diffs),
        ratio_of_means=m / b if b else None,
        mean_length=m,
        mean_base_length=b,
        n_pairs=len(common),
        unpaired=unpaired,
    )
