"""The next-steps study: ``pytest experiments/next_steps`` runs H8-H11 with this directory's own config.

The formablate plugin reads ``FORMABLATE_EXPERIMENT`` from a conftest.py above the collected hypothesis
tests (a path relative to that conftest) when ``--experiment`` is not given; ``experiments/conftest.py``
keeps this directory out of a plain ``pytest experiments`` run, which stays the default study.
"""

FORMABLATE_EXPERIMENT = "next_steps.yaml"
