"""The dataset gate: ``pytest experiments -m dataset``. No model is loaded.

One test per rule and file (the rules of :mod:`formablate.data.validate`), over every
dataset declared by a manifest in ``data/canonical/*.manifest.yaml`` (rendered
under ``data/sft/<name>/``) and every eval file in ``data/eval/*.jsonl``; every other
file the experiment config trains on gets the record-level rules (shape, empty turns,
ids, token limit: :mod:`formablate.data.trained`). A failing
test lists every offending line as ``file:line: rule: found ..., expected ...``;
passing tests print their reports (highest near-duplicate and contamination pairs,
answer length per domain, how many records the byte bound proved) with ``-s``/``-rP``.

``test_config_datasets_are_gated`` checks that every dataset the experiment config (and the
shipped ``experiments/next_steps`` study) trains on is one the gate covers: a manifest format's
rendered file or a manifest-declared blend (whose ``blends`` rule proves each record is a gated
record), so no arm trains on data no rule has seen.

The token limit and the tokenizer come from the experiment config (``--experiment``,
default :data:`formablate.config.DEFAULT_EXPERIMENT`). A record whose byte bound exceeds
the limit is counted with that model's tokenizer, read without its weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from formablate.config import DEFAULT_EXPERIMENT, find_repo_root, load_experiment
from formablate.data.context import DEFAULT_MAX_LENGTH, DatasetContext, EvalSet, RuleResult, load_eval, load_manifest
from formablate.data.validate import Rule, rules
from formablate.errors import HarnessError

pytestmark = pytest.mark.dataset

ROOT = find_repo_root(Path(__file__).parent)
CANONICAL_DIR = ROOT / "data" / "canonical"
SFT_DIR = ROOT / "data" / "sft"
EVAL_DIR = ROOT / "data" / "eval"


def _datasets() -> list[str]:
    return [p.name.removesuffix(".manifest.yaml") for p in sorted(CANONICAL_DIR.glob("*.manifest.yaml"))]


def _formats(name: str) -> list[str]:
    try:
        return list(load_manifest(CANONICAL_DIR / f"{name}.manifest.yaml").formats)
    except HarnessError:
        return []  # the dataset-scope tests report the broken manifest


def _evals() -> list[Path]:
    return sorted(EVAL_DIR.glob("*.jsonl"))


def _params(items: list[tuple], ids: list[str], missing: str) -> list:
    if not items:
        return [pytest.param(*([None] * 3), marks=pytest.mark.skip(reason=missing))]
    return [pytest.param(*(list(it) + [None] * (3 - len(it))), id=i) for it, i in zip(items, ids)]


_NO_DATA = "no dataset manifest in data/canonical/ yet (data/canonical/<name>.manifest.yaml)"
_NO_EVAL = "no eval file in data/eval/ yet (data/eval/*.jsonl)"

_DATASET_CASES = [(n, r) for n in _datasets() for r in rules("dataset")]
_FORMAT_CASES = [(n, f, r) for n in _datasets() for f in _formats(n) for r in rules("format")]
_EVAL_CASES = [(e, r) for e in _evals() for r in rules("eval")]
_CONTAMINATION_CASES = [(n, e, t) for n in _datasets() for e in _evals() for t in ["canonical", *_formats(n)]]

_contexts: dict[str, DatasetContext] = {}
_eval_sets: dict[Path, EvalSet] = {}


@pytest.fixture(scope="session")
def gate_settings(request: pytest.FixtureRequest) -> tuple[int, str | None]:
    """(max_length, model source) of the experiment config, or the defaults when it cannot be read."""
    path = request.config.getoption("experiment", default=None) or str(ROOT / DEFAULT_EXPERIMENT)
    try:
        cfg = load_experiment(path, request.config.getoption("config_set", default=None) or ())
    except HarnessError:
        return DEFAULT_MAX_LENGTH, None
    return cfg.train.max_length, cfg.model.source


def _fail_on_error(func, *args) -> RuleResult:
    try:
        return func(*args)
    except HarnessError as exc:  # a missing or unreadable file: the message names it
        pytest.fail(str(exc), pytrace=False)


def _dataset(name: str, settings: tuple[int, str | None]) -> DatasetContext:
    if name not in _contexts:
        max_length, source = settings
        _contexts[name] = _fail_on_error(
            DatasetContext.load, CANONICAL_DIR / f"{name}.jsonl", SFT_DIR / name, None,
        )
        _contexts[name].max_length = max_length
        _contexts[name].tokenizer_source = source
    return _contexts[name]


def _eval(path: Path) -> EvalSet:
    if path not in _eval_sets:
        _eval_sets[path] = _fail_on_error(load_eval, path)
    return _eval_sets[path]


def _report(result: RuleResult) -> None:
    for note in result.notes:
        print(note)
    if result.failures:
        lines = [f.format() for f in result.failures]
        pytest.fail(f"{len(lines)} failure(s):\n" + "\n".join(lines), pytrace=False)


@pytest.mark.parametrize(
    "name, rule, _", _params(_DATASET_CASES, [f"{n}-{r.name}" for n, r in _DATASET_CASES], _NO_DATA)
)
def test_dataset_rule(name: str, rule: Rule, _, gate_settings) -> None:
    """One canonical-file rule on one dataset (see the rule's docstring in formablate.data)."""
    _report(_fail_on_error(rule.func, _dataset(name, gate_settings)))


@pytest.mark.parametrize(
    "name, fmt, rule", _params(_FORMAT_CASES, [f"{n}-{f}-{r.name}" for n, f, r in _FORMAT_CASES], _NO_DATA)
)
def test_format_rule(name: str, fmt: str, rule: Rule, gate_settings) -> None:
    """One rendered-file rule on data/sft/<name>/<fmt>.jsonl."""
    _report(_fail_on_error(rule.func, _dataset(name, gate_settings), fmt))


@pytest.mark.parametrize(
    "path, rule, _", _params(_EVAL_CASES, [f"{p.stem}-{r.name}" for p, r in _EVAL_CASES], _NO_EVAL)
)
def test_eval_rule(path: Path, rule: Rule, _) -> None:
    """One eval-file rule on one eval file."""
    _report(_fail_on_error(rule.func, _eval(path)))


@pytest.mark.parametrize(
    "name, path, target",
    _params(_CONTAMINATION_CASES, [f"{n}-{t}-vs-{p.stem}" for n, p, t in _CONTAMINATION_CASES],
            _NO_DATA if not _datasets() else _NO_EVAL),
)
def test_contamination(name: str, path: Path, target: str, gate_settings) -> None:
    """No training text of <name> (canonical file or one rendered format) overlaps an eval prompt."""
    (contamination,) = rules("contamination")
    _report(_fail_on_error(contamination.func, _dataset(name, gate_settings), _eval(path), target))


def _gated_files() -> dict[Path, str]:
    """Every training file the gate's rules cover: rendered formats and declared blends, by resolved path."""
    out: dict[Path, str] = {}
    for name in _datasets():
        try:
            man = load_manifest(CANONICAL_DIR / f"{name}.manifest.yaml")
        except HarnessError:
            continue  # the dataset-scope tests report the broken manifest
        for fmt in man.formats:
            out[(SFT_DIR / name / f"{fmt}.jsonl").resolve()] = f"{name}/{fmt}"
        for blend in man.blends:
            out[(SFT_DIR / name / f"{blend}.jsonl").resolve()] = f"{name}/{blend} (blend)"
    return out


def test_config_datasets_are_gated(request: pytest.FixtureRequest) -> None:
    """Every arm of the experiment config (and of the shipped next_steps study) trains on a gated file."""
    paths = [Path(request.config.getoption("experiment", default=None) or ROOT / DEFAULT_EXPERIMENT)]
    if not paths[0].is_file():
        pytest.skip(f"no experiment config at {paths[0]}: nothing trains on any dataset yet")
    shipped = ROOT / "experiments" / "next_steps" / "next_steps.yaml"
    if shipped.is_file():
        paths.append(shipped)
    gated = _gated_files()
    problems = []
    for path in paths:
        cfg = _fail_on_error(load_experiment, path, request.config.getoption("config_set", default=None) or ())
        for arm in cfg.arms:
            data = cfg.path(arm.dataset).resolve()
            if data not in gated:
                problems.append(f"{path}: arm {arm.name!r} trains on {arm.dataset}, which no manifest in "
                                f"data/canonical/ declares (add it to the manifest's formats or blends)")
            else:
                print(f"{cfg.name}/{arm.name}: {gated[data]}")
    if problems:
        pytest.fail(f"{len(problems)} ungated dataset(s):\n" + "\n".join(problems), pytrace=False)


def _declared_files() -> set[Path]:
    return {(SFT_DIR / n / f"{f}.jsonl").resolve() for n in _datasets() for f in _formats(n)}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize test_trained_file_rule over the config's training files that no manifest declares."""
    if metafunc.function.__name__ != "test_trained_file_rule":
        return
    from formablate.data.trained import TRAINED_FILE_RULES, undeclared_training_files

    path = metafunc.config.getoption("experiment", default=None) or str(ROOT / DEFAULT_EXPERIMENT)
    try:
        cfg = load_experiment(path)
    except HarnessError as exc:
        params = [pytest.param(None, None, None, None, marks=pytest.mark.skip(reason=f"config unreadable: {exc}"))]
    else:
        files = undeclared_training_files(cfg, _declared_files())
        params = [pytest.param(arms, p, fmt, rule, id=f"{arms}-{rule}")
                  for arms, p, fmt in files for rule in TRAINED_FILE_RULES]
        if not params:
            params = [pytest.param(None, None, None, None, marks=pytest.mark.skip(
                reason=f"every file {Path(path).name} trains on is declared by a manifest (gated above)"))]
    metafunc.parametrize("arms, path, fmt, rule", params)


def test_trained_file_rule(arms: str, path: Path, fmt: str, rule: str, gate_settings) -> None:
    """One record-level rule on a file the config trains on that no manifest declares (arms named in the id)."""
    from formablate.data.trained import TrainedFile, run_rule

    max_length, source = gate_settings
    _report(_fail_on_error(run_rule, rule, TrainedFile(path, max_length, tokenizer_source=source), fmt))
