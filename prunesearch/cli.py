"""Command-line entry point.

Sub-commands live in ``prunesearch/commands/<name>.py``; each module defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. They are discovered here, so adding a command
never touches this file. This layer (cli + commands) is the only one that prints.

A :class:`~prunesearch.errors.PrunesearchError` becomes one red line on stderr and exit code 2;
``--debug`` re-raises it with the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__
from .errors import PrunesearchError

# Fixed order for --help; commands not listed here are appended alphabetically.
_ORDER = ["discover", "transfer", "study", "worker", "report", "rethink", "arch", "train"]


def _command_modules() -> list:
    from . import commands

    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    return [importlib.import_module(f"{commands.__name__}.{n}") for n in names]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, where to look) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message}; see '{self.prog} --help'\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="prunesearch",
        description="Network pruning as architecture search: discover width patterns, fit design "
        "rules, transfer them, and compare against uniform pruning at equal parameter budgets.",
    )
    parser.add_argument("--version", action="version", version=f"prunesearch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser



def _quiet_libraries() -> None:
    """The CLI's own output is the progress; Optuna's per-trial INFO lines and experimental-API
    warnings would interleave with it. Only the CLI does this (importing prunesearch does not)."""
    import logging
    import warnings

    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*is experimental.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    _quiet_libraries()
    try:
        return int(args._run(args) or 0)
    except PrunesearchError as e:
        if args.debug:
            raise
        from .commands._common import err_console

        from rich.markup import escape

        # the message may quote user input ("[/red]" as a model name): never read it as markup
        err_console().print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False, soft_wrap=True)
        return e.exit_code
    except OSError as e:
        # a file system refusing mid-run (read-only, full, removed) that no layer turned into a
        # PrunesearchError: still one line, and results already in the storage are safe
        if args.debug:
            raise
        from rich.markup import escape

        from .commands._common import err_console

        target = getattr(e, "filename2", None) or getattr(e, "filename", None)  # a rename names its target second
        where = f" ({target})" if target else ""
        err_console().print(f"[bold red]error:[/] {escape(e.strerror or str(e))}{escape(where)}; completed trials are "
                            "kept in the run's storage: fix the disk or permissions and run the same command again "
                            "(--debug shows where)", markup=True, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
