"""Session fixtures of the experiment tests (registered by :mod:`formablate.plugin.hooks`).

* ``experiment_config`` - the validated experiment config (None in replay without ``--experiment``).
* ``results_provider`` - the session's :class:`formablate.plugin.provider.ResultsProvider`; creating it costs
  nothing. Its family is every hypothesis collected (before ``-k``); its selection the ones that will run.
* ``formablate_hypothesis`` - what a :func:`formablate.hypothesis` test calls: materialises the data (once per
  session, lazily), decides the hypothesis, records the verdict on the test's report and ends the test by
  it: CONFIRMED returns, REJECTED raises ``AssertionError`` with the evidence, INCONCLUSIVE skips.
* ``hypothesis_data`` - ``hypothesis_data("H4")``: H4's arms, results (only its arms) and ``verdict()``, for
  tests that want to look at the data themselves.

Heavy modules (scipy through the verdicts, the pipeline) are imported inside the fixtures, so registering
this module costs a test run nothing. Imports :mod:`formablate.plugin.state`, never the hooks module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from formablate.plugin.state import SESSION_KEY, VERDICT_PROPERTY, HarnessSession

if TYPE_CHECKING:
    from formablate.config import ExperimentConfig
    from formablate.hypotheses import Verdict
    from formablate.hypotheses.registry import HypothesisDef
    from formablate.plugin.provider import HypothesisData, ResultsProvider

__all__ = ["harness_session", "experiment_config", "results_provider", "hypothesis_data", "formablate_hypothesis"]


@pytest.fixture(scope="session")
def harness_session(pytestconfig: pytest.Config) -> HarnessSession:
    """The plugin's session object (options, family, records, report)."""
    return pytestconfig.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def experiment_config(harness_session: HarnessSession) -> ExperimentConfig | None:
    """The experiment config (--experiment, a conftest's FORMABLATE_EXPERIMENT, or the default; None in replay)."""
    return harness_session.experiment_config()


@pytest.fixture(scope="session")
def results_provider(request: pytest.FixtureRequest, harness_session: HarnessSession) -> ResultsProvider:
    """The session's results provider over the collected family; selected = the hypothesis items that will run."""
    from formablate.plugin.provider import ResultsProvider
    from formablate.plugin.state import hypothesis_marker

    selected = [found[0] for item in request.session.items if (found := hypothesis_marker(item)) is not None]
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def progress():  # show training/generation progress live instead of capturing it until the test ends
        return capture.global_and_fixture_disabled()

    provider = ResultsProvider(
        config=harness_session.experiment_config(),
        replay=harness_session.replay_path,
        family=list(harness_session.family.values()),
        selected=selected,
        progress=progress if capture is not None else None,
        on_results=harness_session.results_ready,
    )
    harness_session.provider = provider
    return provider


@pytest.fixture
def hypothesis_data(
    request: pytest.FixtureRequest, results_provider: ResultsProvider, harness_session: HarnessSession
) -> Callable[[str], HypothesisData]:
    """``hypothesis_data(id)``: the hypothesis's arms, results and verdict (materialised lazily, once)."""

    def get(hypothesis_id: str) -> HypothesisData:
        data = results_provider.data(hypothesis_id)
        harness_session.attach_results(request.node)
        return data

    return get


def _record(node: pytest.Item, verdict: Verdict) -> Verdict:
    __tracebackhide__ = True
    from formablate.verdicts import render_verdict

    if any(p[0] == VERDICT_PROPERTY for p in node.user_properties):
        raise pytest.UsageError(f"{node.nodeid}: a verdict was recorded twice")
    node.user_properties.append((VERDICT_PROPERTY, verdict.model_dump_json()))
    if verdict.verdict == "REJECTED":
        raise AssertionError(f"{verdict.id} REJECTED\n{render_verdict(verdict)}")
    if verdict.verdict == "INCONCLUSIVE":
        # reported at the test's own location (as a skip marker is), not inside the plugin
        raise pytest.skip.Exception(f"{verdict.id} INCONCLUSIVE: {verdict.reason}", _use_item_location=True)
    return verdict


@pytest.fixture
def formablate_hypothesis(
    request: pytest.FixtureRequest, harness_session: HarnessSession
) -> Callable[[HypothesisDef], Any]:
    """Decide the calling test's hypothesis and end the test by its verdict (used by @formablate.hypothesis)."""

    def run(hdef: HypothesisDef) -> Verdict:
        __tracebackhide__ = True
        provider = request.getfixturevalue("results_provider")
        data = provider.data(hdef.id)
        harness_session.attach_results(request.node)
        return _record(request.node, data.verdict())

    return run
