"""Plain-file sources of a report: JSON-lines record files and the rule-profile shape of a rule file.

``records.jsonl`` holds one ``TrialRecord.to_dict()`` per line, ``rethink.jsonl`` one
``RethinkRecord.to_dict()`` per line (blank lines are skipped). Errors name the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from ..records import RethinkRecord, TrialRecord

T = TypeVar("T")


def _load_jsonl(path: str | os.PathLike, parse: Callable[[dict[str, Any]], T], what: str) -> list[T]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file {p} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} file {p}: {err}; check its permissions and encoding") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise TypeError(f"expected a JSON object, got {type(d).__name__}")
            out.append(parse(d))
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"{p}:{n} is not a valid {what} ({' '.join(str(err).split())}); each line must be one "
                f"JSON object as written by {what.split()[0]}.to_dict()"
            ) from None
    return out


def load_records_jsonl(path: str | os.PathLike) -> list[TrialRecord]:
    """TrialRecords from a JSON-lines file (one ``TrialRecord.to_dict()`` per line)."""
    return _load_jsonl(path, TrialRecord.from_dict, "TrialRecord")


def load_rethink_jsonl(path: str | os.PathLike) -> list[RethinkRecord]:
    """RethinkRecords from a JSON-lines file (one ``RethinkRecord.to_dict()`` per line)."""
    return _load_jsonl(path, RethinkRecord.from_dict, "RethinkRecord")


def write_records_jsonl(records: list[TrialRecord] | list[RethinkRecord], path: str | os.PathLike) -> Path:
    """Export records as JSON lines (atomic), e.g. to archive a study next to its report."""
    from ..fileio import atomic_write_bytes

    data = "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in records)
    return atomic_write_bytes(Path(path), data.encode())


def _points(value: Any) -> list[tuple[float, float]] | None:
    """[[d, k], ...] or {"rel_depth": [...], "keep_ratio": [...]} -> [(d, k), ...]."""
    if isinstance(value, dict):
        depth = next((value[k] for k in ("rel_depth", "relative_depth", "depth") if k in value), None)
        keep = next((value[k] for k in ("keep_ratio", "keep_ratios", "keep") if k in value), None)
        if isinstance(depth, list) and isinstance(keep, list) and len(depth) == len(keep):
            value = list(zip(depth, keep))
        else:
            return None
    if not isinstance(value, list):
        return None
    try:
        return [(float(d), float(k)) for d, k in value]
    except (TypeError, ValueError):
        return None


def rule_profile_from_rule(rule: Any) -> dict[str, list[tuple[float, float]]] | None:
    """The pooled keep-ratio profile of a prunesearch rule file's data (``prunesearch_rule``
    format 1 or 2): {param fraction: [(relative position, value), ...]}; stage rules put each stage
    at the middle of its share of the depth, depth rules at their grid positions."""
    if not isinstance(rule, dict) or "prunesearch_rule" not in rule or not isinstance(rule.get("levels"), list):
        return None
    res = rule.get("resolution")
    if not isinstance(res, int) or res < 1:
        return None
    if rule.get("kind") == "depth":
        pos = rule.get("positions")
        if not (isinstance(pos, list) and len(pos) == res):
            pos = [(j + 0.5) / res for j in range(res)] if rule.get("prunesearch_rule") == 1 else (
                [0.5] if res == 1 else [j / (res - 1) for j in range(res)])
    else:
        pos = [(j + 0.5) / res for j in range(res)]
    out: dict[str, list[tuple[float, float]]] = {}
    for lv in rule["levels"]:
        if not isinstance(lv, dict) or not isinstance(lv.get("values"), dict):
            continue
        vals = lv["values"].get("all")
        if isinstance(vals, list) and len(vals) == res:
            try:
                out[f"{float(lv.get('param_fraction')):.3g}"] = [(float(p), float(v)) for p, v in zip(pos, vals)]
            except (TypeError, ValueError):
                continue
    return out or None


def rule_profile_from_dict(rule: Any) -> dict[str, list[tuple[float, float]]] | None:
    """Pull a keep-ratio profile {level: [(relative_depth, keep_ratio), ...]} out of a rule file's
    data, or None when the file has no profile in a shape this function knows.

    A prunesearch rule file (``prunesearch_rule``) is read by :func:`rule_profile_from_rule`.
    Other accepted shapes (``profile`` or ``levels`` at the top level):
    ``{profile: {0.3: [[0.0, 0.9], [1.0, 0.2]]}}``,
    ``{levels: {0.3: {rel_depth: [...], keep_ratio: [...]}}}``,
    ``{levels: [{budget: 0.3, points: [[d, k], ...]}]}``.
    """
    if not isinstance(rule, dict):
        return None
    if "prunesearch_rule" in rule:
        return rule_profile_from_rule(rule)
    body = next((rule[k] for k in ("profile", "levels") if k in rule), None)
    out: dict[str, list[tuple[float, float]]] = {}
    if isinstance(body, dict):
        for level, value in body.items():
            pts = _points(value)
            if pts:
                out[str(level)] = pts
    elif isinstance(body, list):
        for i, item in enumerate(body):
            if not isinstance(item, dict):
                continue
            level = next((item[k] for k in ("budget", "level", "global_ratio", "ratio") if k in item), i)
            pts = _points(item.get("points", item))
            if pts:
                out[str(level)] = pts
    return out or None
