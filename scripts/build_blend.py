#!/usr/bin/env python
"""Build the concise+terse blend of the next_steps study from the committed rendered files.

Record i of ``data/sft/phase9_pilot_300/blend_concise_terse.jsonl`` is line i of
``multi_turn_concise.jsonl`` when i is even and line i of ``structured_terse.jsonl`` when i
is odd (0-based): the same 300 canonical examples, half in each shape. Lines are copied
byte for byte, so the blend is deterministic and every record is exactly a record the
dataset gate already accepts in its own format. Both inputs must list the same ids in the
same order (one rendering of one canonical file); anything else is refused. The blend is
declared under ``blends:`` in ``data/canonical/phase9_pilot_300.manifest.yaml``, so
``formablate render`` rebuilds it too (the same function), and the gate's ``blends`` rule
checks it line by line.

Usage: python scripts/build_blend.py [--check]
``--check`` rebuilds in memory and exits 1 if the committed file differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIR = ROOT / "data" / "sft" / "phase9_pilot_300"
EVEN, ODD = DIR / "multi_turn_concise.jsonl", DIR / "structured_terse.jsonl"
OUT = DIR / "blend_concise_terse.jsonl"


def build() -> bytes:
    # the same function `formablate render` uses for a manifest's `blends`
    from formablate.data.render import blend_bytes

    return blend_bytes([EVEN, ODD])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file is not what this builds")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        same = OUT.is_file() and OUT.read_bytes() == data
        print(f"{OUT.relative_to(ROOT)}: {'up to date' if same else 'differs from what build_blend.py makes'}")
        return 0 if same else 1
    from formablate.io import atomic_write_bytes

    atomic_write_bytes(OUT, data)
    records = data.count(b"\n")
    print(f"wrote {OUT.relative_to(ROOT)} ({records} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
