"""Independent code checks of every reasoning answer (canonical and eval).

Each entry recomputes an answer from the problem's own numbers or, for logic
puzzles, by brute force over every possible assignment, without reusing the
written solution. Keys are ``"<example id>#<exchange index>"`` (0-based) for the
reasoning examples of ``phase9_pilot_300.jsonl`` / ``bilawal_smol_magpie_v1.jsonl``
and ``"<eval id>#0"`` for the reasoning prompts of ``data/eval/phase9_eval_153.jsonl``.
A check returns a number, to be compared with ``float(final_answer.value)`` within
the constraint's ``tolerance`` (rounded results are rounded to the precision the
answer states), or a string, to be compared with ``final_answer.value``. Stdlib
only; importing runs nothing. ``python data/canonical/reasoning_checks.py`` runs
every check against those files and exits 1 on a mismatch or an unchecked item.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from itertools import permutations, product
from math import ceil, comb, isclose
from pathlib import Path

__all__ = ["CHECKS", "EVAL_CHECKS", "run"]

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _only(solutions: list, what: str):
    """Return the single solution of a puzzle; a puzzle with 0 or 2+ solutions is a data bug."""
    if len(solutions) != 1:
        raise AssertionError(f"{what}: expected exactly one solution, found {len(solutions)}: {solutions!r}")
    return solutions[0]


def _knights(names: tuple[str, ...], claims: dict) -> list[dict]:
    """All knight(True)/knave(False) assignments where each claim's truth equals its speaker's type."""
    out = []
    for values in product((True, False), repeat=len(names)):
        who = dict(zip(names, values))
        if all(claims[n](who) == who[n] for n in names):
            out.append(who)
    return out


def _orders(names: tuple[str, ...], ok) -> list[tuple[str, ...]]:
    """All orderings (first to last) of ``names`` that satisfy ``ok(pos)``, where pos maps name -> index."""
    out = []
    for perm in permutations(names):
        pos = {n: i for i, n in enumerate(perm)}
        if ok(pos):
            out.append(perm)
    return out


def _clock(h: int, m: int) -> float:
    """Smaller angle in degrees between the hands of a clock at h:m."""
    d = abs((h % 12) * 30 + m * 0.5 - m * 6)
    return min(d, 360 - d)


def _add_minutes(hhmm: str, minutes: float) -> str:
    h, m = map(int, hhmm.split(":"))
    t = h * 60 + m + round(minutes)
    return f"{t // 60}:{t % 60:02d}"


def _weekday(start: str, days_later: int) -> str:
    return _DAYS[(_DAYS.index(start) + days_later) % 7]


def _liar_puzzle(suspects: tuple[str, ...], statements, n_true: int) -> list[str]:
    """Culprits for which exactly ``n_true`` statements hold; statements(culprit) -> list of bools."""
    return [c for c in suspects if sum(statements(c)) == n_true]


def _boxes(draw_from: str | None = None, drawn: str | None = None):
    """Mislabelled-boxes puzzle: every (label -> content) map with all labels wrong."""
    labels = ("apples", "oranges", "mixed")
    maps = [dict(zip(labels, p)) for p in permutations(labels) if all(a != b for a, b in zip(labels, p))]
    if draw_from is None:
        # The label whose single draw always identifies the whole assignment.
        good = []
        for lab in labels:
            outcomes: dict[str, list] = {}
            for mp in maps:
                fruits = ("apples", "oranges") if mp[lab] == "mixed" else (mp[lab],)
                for f in fruits:
                    outcomes.setdefault(f, []).append(mp)
            if all(len(v) == 1 for v in outcomes.values()):
                good.append(lab)
        return good
    # A pure box yields only its fruit; a mixed box could yield either.
    return [mp for mp in maps if mp[draw_from] in (drawn, "mixed")]


def _critical_path(tasks: dict[str, tuple[float, tuple[str, ...]]]) -> float:
    """Earliest finish of a task graph with unlimited parallel workers."""
    finish: dict[str, float] = {}

    def f(t: str) -> float:
        if t not in finish:
            dur, deps = tasks[t]
            finish[t] = dur + max((f(d) for d in deps), default=0)
        return finish[t]

    return max(f(t) for t in tasks)


def _dice_total(pred, n: int = 2) -> Fraction:
    rolls = list(product(range(1, 7), repeat=n))
    return Fraction(sum(1 for r in rolls if pred(sum(r))), len(rolls))


def _draws(bag: dict[str, int], k: int, pred) -> Fraction:
    """Probability that k draws without replacement from ``bag`` satisfy pred(list of colours)."""
    balls = [c for c, n in bag.items() for _ in range(n)]
    seqs = list(permutations(range(len(balls)), k))
    return Fraction(sum(1 for s in seqs if pred([balls[i] for i in s])), len(seqs))


def _seatings(names: tuple[str, ...], ok) -> int:
    return sum(1 for p in permutations(names) if ok({n: i for i, n in enumerate(p)}, len(p)))


def _schedule_005(di_not_last: bool) -> list[dict]:
    out = []
    for p in permutations(("Ana", "Bo", "Cy", "Di")):
        s = {n: i for i, n in enumerate(p)}  # slot index 0..3 = 9:00..12:00
        if s["Bo"] in (0, 3) or s["Di"] != s["Bo"] + 1 or s["Cy"] > s["Ana"] or s["Ana"] == 3:
            continue
        if di_not_last and s["Di"] == 3:
            continue
        out.append(s)
    return out


CHECKS = {
    # reasoning-001: pens at 3 for $2
    "reasoning-001#0": lambda: 18 / 3 * 2,
    "reasoning-001#1": lambda: 20 - 18 / 3 * 2,
    "reasoning-001#2": lambda: (15 // 2) * 3,
    # reasoning-002: 150 km at 60 km/h from 9:40, then a 15-minute stop
    "reasoning-002#0": lambda: _add_minutes("9:40", 150 / 60 * 60),
    "reasoning-002#1": lambda: _add_minutes("9:40", 150 / 60 * 60 + 15),
    # reasoning-003: knights and knaves, two variants
    "reasoning-003#0": lambda: [n for n, k in _only(_knights(("Ava", "Ben"), {
        "Ava": lambda w: not w["Ben"], "Ben": lambda w: w["Ava"] and w["Ben"]}), "003#0").items() if k][0],
    "reasoning-003#1": lambda: [n for n, k in _only(_knights(("Ava", "Ben"), {
        "Ava": lambda w: not w["Ben"], "Ben": lambda w: not (w["Ava"] and w["Ben"])}), "003#1").items() if k][0],
    # reasoning-004: five runners
    "reasoning-004#0": lambda: _only(sorted({o[-1] for o in _orders(("Amy", "Ben", "Cal", "Dee", "Eve"), lambda p: (
        p["Cal"] < p["Amy"] < p["Ben"] and p["Dee"] == p["Ben"] + 1 and p["Eve"] != 4))}), "004#0"),
    "reasoning-004#1": lambda: _only(_orders(("Amy", "Ben", "Cal", "Dee", "Eve"), lambda p: (
        p["Cal"] < p["Amy"] < p["Ben"] and p["Dee"] == p["Ben"] + 1 and p["Eve"] != 4 and p["Eve"] < p["Cal"])), "004#1")[2],
    # reasoning-005: four talks in four slots
    "reasoning-005#0": lambda: [n for n, s in _only(_schedule_005(False), "005#0").items() if s == 1][0],
    "reasoning-005#1": lambda: len(_schedule_005(True)),
    # reasoning-006: two dice
    "reasoning-006#0": lambda: round(float(_dice_total(lambda t: t == 8)), 3),
    "reasoning-006#1": lambda: round(float(_dice_total(lambda t: t >= 8)), 3),
    # reasoning-007: painters
    "reasoning-007#0": lambda: 3 * 8 / 4,
    "reasoning-007#1": lambda: 3 * 8 / 2,
    # reasoning-008: +20% then -20% on 50
    "reasoning-008#0": lambda: round(50 * 1.2 * 0.8, 2),
    "reasoning-008#1": lambda: round((50 - 50 * 1.2 * 0.8) / 50 * 100, 6),
    # reasoning-009: ages
    "reasoning-009#0": lambda: _only([s for s in range(1, 120) if 3 * s + 12 == 2 * (s + 12)], "009"),
    "reasoning-009#1": lambda: 3 * _only([s for s in range(1, 120) if 3 * s + 12 == 2 * (s + 12)], "009"),
    # reasoning-010: fuel cost
    "reasoning-010#0": lambda: round(340 * 6.5 / 100 * 1.80, 2),
    "reasoning-010#1": lambda: round(340 * 6.5 / 100 * 1.80 / 3, 2),
    # reasoning-011: pipes
    "reasoning-011#0": lambda: float(1 / (Fraction(1, 6) + Fraction(1, 3))),
    "reasoning-011#1": lambda: float(1 / (Fraction(1, 6) + Fraction(1, 3) - Fraction(1, 4))),
    # reasoning-012: mislabelled boxes
    "reasoning-012#0": lambda: _only(_boxes(), "012#0"),
    "reasoning-012#1": lambda: _only(_boxes("mixed", "oranges"), "012#1")["apples"],
    # reasoning-013: 2, 6, 12, 20, 30
    "reasoning-013#0": lambda: 30 + (30 - 20) + ((30 - 20) - (20 - 12)),
    "reasoning-013#1": lambda: _only([n * (n + 1) for n in [10] if [k * (k + 1) for k in range(1, 6)] == [2, 6, 12, 20, 30]], "013#1"),
    # reasoning-014: handshakes
    "reasoning-014#0": lambda: comb(8, 2),
    "reasoning-014#1": lambda: comb(8 + 4, 2),
    # reasoning-015: clock angles
    "reasoning-015#0": lambda: _clock(3, 40),
    "reasoning-015#1": lambda: _clock(9, 20),
    # reasoning-016: compound interest
    "reasoning-016#0": lambda: round(1000 * 1.05 ** 3, 2),
    "reasoning-016#1": lambda: round(1000 * 1.05 ** 3 - 1000, 2),
    # reasoning-017: weekdays from a Tuesday, 1 March
    "reasoning-017#0": lambda: _weekday("Tuesday", 25 - 1),
    "reasoning-017#1": lambda: _weekday("Tuesday", (31 - 1) + 10),
    # reasoning-018: average speed
    "reasoning-018#0": lambda: 120 / (60 / 30 + 60 / 60),
    "reasoning-018#1": lambda: float(60 / (Fraction(120, 45) - Fraction(60, 30))),
    # reasoning-019: seating with restrictions
    "reasoning-019#0": lambda: _seatings(("Ana", "Bo", "Cy", "Dee"), lambda p, n: abs(p["Ana"] - p["Bo"]) != 1),
    "reasoning-019#1": lambda: _seatings(("Ana", "Bo", "Cy", "Dee"),
                                         lambda p, n: abs(p["Ana"] - p["Bo"]) != 1 and p["Cy"] in (0, n - 1)),
    # reasoning-020: marbles
    "reasoning-020#0": lambda: round(float(_draws({"r": 3, "b": 2}, 2, lambda s: s == ["r", "r"])), 3),
    "reasoning-020#1": lambda: round(float(_draws({"r": 3, "b": 2}, 2, lambda s: sorted(s) == ["b", "r"])), 3),
    # reasoning-021: overtime pay
    "reasoning-021#0": lambda: 40 * 18 + (46 - 40) * 18 * 1.5,
    "reasoning-021#1": lambda: round((40 * 18 + (46 - 40) * 18 * 1.5) * (1 - 0.20), 2),
    # reasoning-022: 5:2 ratio
    "reasoning-022#0": lambda: 350 / 5 * 2,
    "reasoning-022#1": lambda: 100 / 2 * 5,
    # reasoning-023: coins
    "reasoning-023#0": lambda: _only([t for t in range(16) if 10 * t + 5 * (15 - t) == 110], "023"),
    "reasoning-023#1": lambda: 15 - _only([t for t in range(16) if 10 * t + 5 * (15 - t) == 110], "023"),
    # reasoning-024: exactly one truth-teller
    "reasoning-024#0": lambda: _only(_liar_puzzle(("Ali", "Bea", "Cam"),
                                                  lambda c: [c == "Bea", c != "Bea", c != "Cam"], 1), "024#0"),
    "reasoning-024#1": lambda: _only(_liar_puzzle(("Dev", "Eli", "Fay"),
                                                  lambda c: [c == "Eli", not (c == "Eli"), c != "Fay"], 1), "024#1"),
    # reasoning-025: shed tasks
    "reasoning-025#0": lambda: _critical_path({"A": (3, ()), "B": (4, ("A",)), "C": (2, ()),
                                               "D": (2, ("B",)), "E": (1, ("B", "C"))}),
    "reasoning-025#1": lambda: 3 + 4 + 2 + 2 + 1,
    # reasoning-026: exam
    "reasoning-026#0": lambda: 40 * 0.60 * 0.25,
    "reasoning-026#1": lambda: round(40 * 0.60 * 0.25 / 40 * 100, 6),
    # reasoning-027: running pace
    "reasoning-027#0": lambda: 1.5 / (12 / 60),
    "reasoning-027#1": lambda: round(10 / 1.609 / (1.5 / (12 / 60)) * 60, 1),
    # reasoning-028: three coins
    "reasoning-028#0": lambda: sum(1 for f in product("HT", repeat=3) if "H" in f) / 8,
    "reasoning-028#1": lambda: sum(1 for f in product("HT", repeat=3) if f.count("H") == 2) / 8,
    # reasoning-029: heights, index 0 = tallest
    "reasoning-029#0": lambda: _only(_orders(("Kim", "Lee", "Max", "Nia", "Ola"), lambda p: (
        p["Kim"] < p["Lee"] < p["Max"] < p["Nia"] and p["Ola"] < p["Kim"])), "029")[-1],
    "reasoning-029#1": lambda: _only(_orders(("Kim", "Lee", "Max", "Nia", "Ola"), lambda p: (
        p["Kim"] < p["Lee"] < p["Max"] < p["Nia"] and p["Ola"] < p["Kim"])), "029")[2],
    # reasoning-030: sums
    "reasoning-030#0": lambda: sum(range(1, 51)),
    "reasoning-030#1": lambda: sum(range(2, 51, 2)),
    # reasoning-031: trains approaching
    "reasoning-031#0": lambda: 300 / (70 + 80),
    "reasoning-031#1": lambda: 70 * 300 / (70 + 80),
    # reasoning-032: buses
    "reasoning-032#0": lambda: ceil(300 / 45),
    "reasoning-032#1": lambda: ceil(300 / 45) * 45 - 300,
    # reasoning-033: stacked discounts
    "reasoning-033#0": lambda: round(80 * 0.75 * 0.90, 2),
    "reasoning-033#1": lambda: round((1 - 0.75 * 0.90) * 100, 6),
    # reasoning-034: at least one six
    "reasoning-034#0": lambda: round(1 - (5 / 6) ** 4, 3),
    "reasoning-034#1": lambda: next(n for n in range(1, 100) if 1 - (5 / 6) ** n > 0.9),
    # reasoning-035: three knights/knaves
    "reasoning-035#0": lambda: sum(_only(_knights(("Cleo", "Dan", "Eli"), {
        "Cleo": lambda w: not w["Dan"], "Dan": lambda w: not w["Eli"],
        "Eli": lambda w: not w["Cleo"] and not w["Dan"]}), "035").values()),
    "reasoning-035#1": lambda: [n for n, k in _only(_knights(("Cleo", "Dan", "Eli"), {
        "Cleo": lambda w: not w["Dan"], "Dan": lambda w: not w["Eli"],
        "Eli": lambda w: not w["Cleo"] and not w["Dan"]}), "035").items() if k][0],
    # reasoning-036: tiles
    "reasoning-036#0": lambda: (240 // 30) * (360 // 30),
    "reasoning-036#1": lambda: ceil(ceil((240 // 30) * (360 // 30) * 1.1) / 10),
    # reasoning-037: hose and drain
    "reasoning-037#0": lambda: float(1 / (Fraction(1, 4) - Fraction(1, 6))),
    "reasoning-037#1": lambda: float(6 + (1 - 6 * (Fraction(1, 4) - Fraction(1, 6))) / Fraction(1, 4)),
    # reasoning-038: league
    "reasoning-038#0": lambda: 6 * 5,
    "reasoning-038#1": lambda: 6 * 5 / 3,
}

EVAL_CHECKS = {
    "eval-reasoning-001#0": lambda: 20 / 4 * 3,
    # The constraint asks for the stated conclusion ("<name> is the knight"), not a bare mention of the name.
    "eval-reasoning-002#0": lambda: [f"{n} is the knight" for n, k in _only(_knights(("Gus", "Hal"), {
        "Gus": lambda w: not w["Gus"] and not w["Hal"], "Hal": lambda w: w["Hal"]}), "eval-002").items() if k][0],
    "eval-reasoning-003#0": lambda: _only(_orders(("red", "blue", "green", "yellow"), lambda p: (
        p["green"] == 3 and p["yellow"] == p["red"] - 1 and p["red"] < p["blue"])), "eval-003").index("blue") + 1,
    "eval-reasoning-004#0": lambda: float(1 / (Fraction(1, 4) + Fraction(1, 12))),
    "eval-reasoning-005#0": lambda: round(float(_dice_total(lambda t: t == 10)), 3),
    "eval-reasoning-006#0": lambda: _clock(9, 15),
    "eval-reasoning-007#0": lambda: 240 / (120 / 40 + 120 / 60),
    "eval-reasoning-008#0": lambda: comb(10, 2),
    "eval-reasoning-009#0": lambda: round(2000 * 1.03 ** 2, 2),
    "eval-reasoning-010#0": lambda: _only([f for f in range(21) if 5 * f + 2 * (20 - f) == 70], "eval-010"),
    # 3, 7, 15, 31: find the rule t(n+1) = a*t(n) + b that fits every step, then apply it to 31.
    "eval-reasoning-011#0": lambda: _only([a * 31 + b for a in range(-5, 6) for b in range(-10, 11) if all(
        a * x + b == y for x, y in zip((3, 7, 15), (7, 15, 31)))], "eval-011"),
    "eval-reasoning-012#0": lambda: _only([s for s in range(1, 120) if 4 * s + 20 == 2 * (s + 20)], "eval-012"),
    "eval-reasoning-013#0": lambda: round(float(_draws({"r": 4, "b": 4}, 2, lambda s: s == ["r", "r"])), 3),
    "eval-reasoning-014#0": lambda: 40 * 20 + (45 - 40) * 20 * 1.5,
    "eval-reasoning-015#0": lambda: _weekday("Monday", 30 - 1),
    "eval-reasoning-016#0": lambda: _critical_path({"water": (10, ()), "pasta": (12, ("water",)),
                                                    "sauce": (15, ()), "mix": (3, ("pasta", "sauce"))}),
    "eval-reasoning-017#0": lambda: _seatings(("Ike", "Jo", "K", "L", "M"), lambda p, n: abs(p["Ike"] - p["Jo"]) == 1),
}


def _agrees(got, fa: dict) -> bool:
    """Whether a check's result matches a final_answer constraint (value or alias; numbers within tolerance)."""
    if isinstance(got, str):
        return got.casefold() in {v.casefold() for v in [fa["value"], *fa.get("aliases", [])]}
    want = float(fa["value"].strip().rstrip("%").lstrip("$\u00a3\u20ac"))
    return isclose(float(got), want, abs_tol=max(fa.get("tolerance", 0.0), 1e-9))


def run(root: Path = Path(__file__).resolve().parents[2]) -> list[str]:
    """Every problem found: a check that disagrees with its constraint, or a reasoning item with no check."""
    canonical, evals = {}, {}
    for name in ("phase9_pilot_300.jsonl", "bilawal_smol_magpie_v1.jsonl"):
        for line in (root / "data" / "canonical" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            canonical.setdefault(row["id"], row)
    for line in (root / "data" / "eval" / "phase9_eval_153.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        evals[row["id"]] = row
    wanted = {f"{i}#{k}": e["constraints"] for i, r in canonical.items() if r["domain"] == "reasoning"
              for k, e in enumerate(r["exchanges"])}
    wanted.update({f"{i}#0": r["constraints"] for i, r in evals.items() if r["category"] == "reasoning"})
    problems = [f"{key}: no check" for key in sorted(set(wanted) - set(CHECKS) - set(EVAL_CHECKS))]
    for key, fn in {**CHECKS, **EVAL_CHECKS}.items():
        if key not in wanted:
            problems.append(f"{key}: check for an item that does not exist")
            continue
        fas = [c for c in wanted[key] if c["kind"] == "final_answer"]
        if len(fas) != 1:
            problems.append(f"{key}: expected one final_answer constraint, found {len(fas)}")
            continue
        got = fn()
        if not _agrees(got, fas[0]):
            problems.append(f"{key}: check gives {got!r}, constraint says {fas[0]['value']!r}")
    return problems


if __name__ == "__main__":
    found = run()
    print("\n".join(found) or f"all {len(CHECKS) + len(EVAL_CHECKS)} reasoning checks agree")
    sys.exit(1 if found else 0)
