"""File I/O shared by every package. Atomic writes (temp file in the same folder, fsync, rename): a
reader never sees a torn file, and a crash leaves either the old file or the new one. Spec reading
with one-line errors. Torch-free."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def read_yaml_spec(path: str | os.PathLike, what: str, example: str) -> Any:
    """``yaml.safe_load`` of a spec file; a missing, unreadable or malformed file is a one-line
    ConfigError naming the file (``what`` e.g. "study spec"; ``example`` a path to suggest)."""
    import yaml

    from .errors import ConfigError

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist; give a path like {example}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {p} cannot be read ({type(e).__name__}); give a readable YAML file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{p}: malformed YAML{at} ({problem}); fix the syntax") from None


def read_document(path: str | os.PathLike, what: str) -> Any:
    """``yaml.safe_load`` / ``json.loads`` (by suffix) of a ``what`` file (architecture, rule,
    pattern), with one-line errors."""
    import json

    import yaml

    from .errors import ConfigError

    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {p} does not exist; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"cannot read {what} file {p} ({type(e).__name__}); give a readable YAML/JSON file") from None
    try:
        return json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}{at}; fix the syntax") from None
