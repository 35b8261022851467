"""`formablate ...`: the seed's pipeline commands as one CLI.

Each subcommand lives in its own module, listed in :data:`SUBCOMMANDS` as
``(name, module)``. A module exposes ``add_parser(subparsers)`` (which registers
its parser and sets ``run`` as the default) and ``run(args) -> int`` (the exit
code). Adding a command is one line here plus those two functions there.

Exit codes: 0 success; 1 a data rule failed; 2 a usage error (bad option, missing
file, unreadable JSON/YAML, invalid config). Errors the harness raises on
purpose are printed as one line, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from formablate.errors import DataError, DataFileError, HarnessError

__all__ = ["SUBCOMMANDS", "build_parser", "exit_code_for", "main"]

SUBCOMMANDS: list[tuple[str, str]] = [
    ("render", "formablate.data.render"),
    ("validate", "formablate.data.validate"),
    ("report", "formablate.report.cli"),
    ("verdicts", "formablate.verdicts"),
    ("build", "formablate.build_cli"),
    ("power", "formablate.power"),
    ("cache", "formablate.cache_admin"),
]


def build_parser() -> argparse.ArgumentParser:
    """The ``formablate`` parser with every registered subcommand."""
    from formablate import __version__

    parser = argparse.ArgumentParser(prog="formablate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"formablate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS:
        mod = importlib.import_module(module)
        sp = mod.add_parser(sub)
        if sp.prog.split()[-1] != name:
            raise RuntimeError(f"module {module!r} registered {sp.prog!r}, expected subcommand {name!r}")
    return parser


def exit_code_for(exc: HarnessError) -> int:
    """1 for a broken data rule, 2 for everything that is a usage error (unreadable files, bad config)."""
    if isinstance(exc, DataError) and not isinstance(exc, DataFileError):
        return 1
    return 2


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on a bad option
    try:
        return int(args.run(args))
    except HarnessError as exc:
        print(f"formablate {args.command}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except BrokenPipeError:  # `formablate validate | head`: the reader left; silence the flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
