"""Every flag a message names exists: a hint that says "run with --x" must name a flag of some
command (and, inside ``commands/NAME.py``, a flag of that command). Walks every string literal of
the package except docstrings (those may quote the reference code's own options)."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

from prunesearch.cli import build_parser

ROOT = Path(__file__).resolve().parents[1] / "prunesearch"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]+)")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    out = {o for a in parser._actions for o in a.option_strings}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                out |= _flags(sp)
    return out


def _command_flags() -> dict[str, set[str]]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: _flags(sp) | {"--help", "--debug"} for name, sp in sub.choices.items()}


def _strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_every_flag_named_in_a_message_exists():
    per_command = _command_flags()
    every = set().union(*per_command.values()) | {"--version"}
    bad = []
    for path in ROOT.rglob("*.py"):
        own = per_command.get(path.stem) if path.parent.name == "commands" else None
        for text in _strings(path):
            allowed = every if own is None else set(own)
            for other in re.findall(r"prunesearch (\w+)", text):  # a quoted command of another name
                allowed = allowed | per_command.get(other, set())
            for flag in FLAG.findall(text):
                if flag not in allowed:
                    bad.append(f"{path.relative_to(ROOT.parent)}: {flag}")
    assert not bad, sorted(set(bad))
