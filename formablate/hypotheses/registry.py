"""The ``@hypothesis`` decorator and discovery of hypotheses in test files (import-light: no scipy, no torch).

A hypothesis is a function of the study's data that returns evidence
(:mod:`formablate.hypotheses.evidence`)::

    @hypothesis("H8", claim="2x the steps beat 1x on judge overall.")
    def test_h8_more_steps_help(data):
        return paired(data.arm("concise_2x"), data.arm("concise"), on="judge.overall")

The decorator turns it into a pytest test marked ``formablate`` whose only
parameter is the plugin's ``formablate_hypothesis`` fixture (name and
docstring are copied by hand, without ``__wrapped__``, so pytest never tries
to inject ``data`` as a fixture). The plugin calls the function with the
data, evaluates the evidence with the one decision rule and Holm over the
family, and ends the test by its verdict.

:func:`discover` finds the hypotheses of a directory by importing its
``test_*.py`` files, without running pytest (``formablate verdicts``).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from formablate.errors import ConfigError

__all__ = ["HypothesisDef", "hypothesis", "hypothesis_of", "discover", "family_order", "MARKER", "FIXTURE", "ID_RE"]

MARKER = "formablate"
FIXTURE = "formablate_hypothesis"
ATTRIBUTE = "formablate_hypothesis"
#: Hypothesis ids: a letter prefix and a number, optionally a suffix (H1, H12, H8b).
ID_RE = re.compile(r"^[A-Za-z]+[0-9]+[A-Za-z0-9_]*$")


@dataclass(frozen=True)
class HypothesisDef:
    """One hypothesis as its author wrote it: id, claim, the evidence function, and where it lives."""

    id: str
    claim: str
    fn: Callable[[Any], Any] = field(repr=False, compare=False)
    title: str = ""
    arms: tuple[str, ...] = ()
    decision: str = ""
    notes: tuple[str, ...] = ()
    test_name: str = ""
    module: str = ""

    def evidence(self, data: Any) -> Any:
        """The evidence the function returns for ``data`` (a list/tuple means all of them must hold)."""
        return self.fn(data)


def _sort_key(hid: str) -> tuple[str, int, str]:
    m = re.match(r"^([A-Za-z]*)([0-9]*)(.*)$", hid)
    assert m is not None
    return (m.group(1).upper(), int(m.group(2) or 0), m.group(3))


def family_order(defs: Iterable[HypothesisDef]) -> list[HypothesisDef]:
    """Hypotheses in family order: by id prefix, then number (H2 before H10)."""
    return sorted(defs, key=lambda d: _sort_key(d.id))


def hypothesis(
    id: str,
    *,
    claim: str,
    arms: Sequence[str] = (),
    title: str = "",
    decision: str = "",
    notes: Sequence[str] = (),
) -> Callable[[Callable[[Any], Any]], Callable[..., Any]]:
    """Decorate ``def test_x(data): return <evidence>`` to make it a pre-registered hypothesis test.

    ``id``: the hypothesis id in reports and ``-k`` (e.g. "H8"); ``claim``: the claim in words, as stated
    before any data; ``arms``: arm names the hypothesis needs (documentation, and a missing one makes the
    verdict INCONCLUSIVE "missing arm" instead of an error); ``title``: a short name (default: the first
    line of the docstring); ``decision``: how the verdict is decided, in words (default: the common rule);
    ``notes``: caveats shown with the verdict.
    """
    if not isinstance(id, str) or not ID_RE.match(id):
        raise ConfigError(f"@hypothesis: id={id!r}, expected letters then a number, e.g. 'H8'")
    if not isinstance(claim, str) or not claim.strip():
        raise ConfigError(f"@hypothesis({id!r}): claim={claim!r}, expected the claim in words")

    def decorate(fn: Callable[[Any], Any]) -> Callable[..., Any]:
        name = getattr(fn, "__name__", "")
        if not name.startswith("test"):
            raise ConfigError(f"@hypothesis({id!r}) on {name!r}: the function name must start with 'test' "
                              "so pytest collects it")
        doc = (fn.__doc__ or "").strip()
        hdef = HypothesisDef(
            id=id, claim=claim.strip(), fn=fn, title=title or (doc.splitlines()[0].rstrip(".") if doc else id),
            arms=tuple(arms), decision=decision, notes=tuple(notes), test_name=name, module=fn.__module__,
        )

        def test(formablate_hypothesis):  # the plugin's fixture; its name is the only parameter pytest sees
            __tracebackhide__ = True
            return formablate_hypothesis(hdef)

        test.__name__ = name
        test.__qualname__ = getattr(fn, "__qualname__", name)
        test.__doc__ = fn.__doc__
        test.__module__ = fn.__module__
        setattr(test, ATTRIBUTE, hdef)
        return getattr(pytest.mark, MARKER)(id=id, claim=hdef.claim)(test)

    return decorate


def hypothesis_of(obj: Any) -> HypothesisDef | None:
    """The :class:`HypothesisDef` behind a decorated test function (or a pytest item), None if none."""
    fn = getattr(obj, "function", obj)
    hdef = getattr(fn, ATTRIBUTE, None)
    return hdef if isinstance(hdef, HypothesisDef) else None


def _import_file(path: Path) -> Any:
    name = "formablate_discovered." + re.sub(r"\W", "_", str(path.resolve().with_suffix("")))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def discover(directory: str | Path, *, errors: list[str] | None = None) -> list[HypothesisDef]:
    """The hypotheses of ``directory``'s ``test_*.py`` files (not its subdirectories), in family order.

    Only files that mention ``hypothesis`` are imported. A file that fails to import, and a duplicate
    id, raise :class:`ConfigError` naming the file - unless ``errors`` is given, in which case the message
    is appended there and the file is skipped (so one broken file does not hide the others).
    """
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory of hypothesis test files")
    found: dict[str, HypothesisDef] = {}
    for path in sorted(root.glob("test_*.py")):
        if "hypothesis" not in path.read_text(encoding="utf-8"):
            continue
        try:
            module = _import_file(path)
            here = [h for v in vars(module).values() if (h := hypothesis_of(v)) is not None]
            for h in here:
                if h.id in found:
                    raise ConfigError(f"{path}: hypothesis id {h.id!r} is already defined by "
                                      f"{found[h.id].module}.{found[h.id].test_name}; ids must be unique")
        except Exception as exc:
            msg = str(exc) if isinstance(exc, ConfigError) else f"{path}: {type(exc).__name__}: {exc}"
            if errors is None:
                raise ConfigError(msg) from exc
            errors.append(msg)
            continue
        found.update({h.id: h for h in here})
    return family_order(found.values())
