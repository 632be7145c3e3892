"""File I/O shared by every package: the one atomic writer and the one spec/document reader.

Atomic writes: a temp file in the same folder (``mkstemp``: an unpredictable name, created with
O_EXCL and mode 0o600, so it never follows a planted symlink and is private), fsync, rename. A
reader never sees a torn file, and a crash leaves either the old file or the new one. Folders are
created 0o700 (results, checkpoints and storages can be sensitive on shared machines). Spec
reading with one-line errors. Torch-free."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def make_private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` and every missing parent as 0o700 (``mkdir(parents=True)`` would give the
    parents the umask's mode), narrow an existing ``path`` we own to 0o700, and check it is
    writable; OSError otherwise."""
    p = Path(path).expanduser()
    missing = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    st = p.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(p, st.st_mode & 0o700)
    if not os.access(p, os.W_OK | os.X_OK):  # read-only mount (EROFS) or permissions; touches nothing
        raise PermissionError(13, "Permission denied", str(p))
    return p


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any], kill_at: str | None = "file-write") -> Path:
    """Write ``path`` atomically: ``write(f)`` fills a private temp file beside it, which is fsynced
    and renamed over ``path``. ``PRUNESEARCH_KILL_AT=<kill_at>`` kills the process between the two
    (reliability tests; checkpoints count as ``checkpoint-write``, other files as ``file-write``)."""
    from .faults import kill_point

    path = Path(path)
    if not path.parent.is_dir():
        make_private_dir(path.parent)
    _remove_dead_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if kill_at:
            kill_point(kill_at)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _remove_dead_temps(path: Path) -> None:
    """Remove temp files of ``path`` left by writers that were killed (their PID is gone); a live
    writer's temp file (another process writing the same file now) is left alone."""
    import glob

    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if not parts or not parts[0].isdigit():
            continue
        pid = int(parts[0])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OSError):
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


MAX_DOCUMENT_BYTES = 1 << 20  # spec, rule, architecture and pattern files: 1 MiB
MAX_YAML_NODES = 200_000  # nodes after expanding aliases (a 484-byte alias bomb expands to billions)
MAX_YAML_DEPTH = 64  # nesting of mappings and lists


class YamlLimitError(ValueError):
    pass


def _safe_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys, deep nesting and alias expansion beyond a size."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    dup = key in seen
                except TypeError:
                    dup = False
                if dup:
                    raise YamlLimitError(f"key {key!r} appears twice at line {key_node.start_mark.line + 1} (the "
                                         "second would silently win); keep one")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, Loader.construct_mapping)
    return Loader


def _check_graph(node) -> None:
    """Expanded size and depth of a composed YAML node graph (aliases share nodes), without expanding."""
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def walk(n, depth: int) -> int:
        if depth > MAX_YAML_DEPTH:
            raise YamlLimitError(f"nesting deeper than {MAX_YAML_DEPTH} levels; flatten the document")
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlLimitError("an alias refers to its own anchor (a recursive document); remove the cycle")
        active.add(key)
        total = 1
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += walk(k, depth + 1) + walk(v, depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for v in n.value:
                total += walk(v, depth + 1)
        if total > MAX_YAML_NODES:
            raise YamlLimitError(f"more than {MAX_YAML_NODES:,} values once aliases are expanded (an alias bomb?); "
                                 "write the document out without so many aliases")
        active.discard(key)
        sizes[key] = total
        return total

    walk(node, 0)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with limits: no duplicate keys, nesting at most MAX_YAML_DEPTH, at most
    MAX_YAML_NODES values after alias expansion (checked on the node graph before anything is
    built). Raises ``yaml.YAMLError`` or :class:`YamlLimitError`."""
    import sys

    loader = _safe_loader()(text)
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old, 10_000))
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    except RecursionError:
        raise YamlLimitError(f"nesting deeper than {MAX_YAML_DEPTH} levels; flatten the document") from None
    finally:
        sys.setrecursionlimit(old)
        loader.dispose()


def _read_text(p: Path) -> str:
    if p.stat().st_size > MAX_DOCUMENT_BYTES:
        raise ValueError(f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB")
    return p.read_text()


def read_yaml_spec(path: str | os.PathLike, what: str, example: str) -> Any:
    """``yaml.safe_load`` of a spec file; a missing, unreadable or malformed file is a one-line
    ConfigError naming the file (``what`` e.g. "study spec"; ``example`` a path to suggest)."""
    import yaml

    from .errors import ConfigError

    p = Path(path)
    try:
        text = _read_text(p)
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist; give a path like {example}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, ValueError, OSError) as e:
        detail = str(e) if isinstance(e, ValueError) and not isinstance(e, UnicodeDecodeError) else type(e).__name__
        raise ConfigError(f"{what} {p} cannot be read ({detail}); give a readable YAML file") from None
    try:
        return load_yaml(text)
    except YamlLimitError as e:
        raise ConfigError(f"{p}: {e}") from None
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
        text = _read_text(p)
    except FileNotFoundError:
        raise ConfigError(f"{what} file {p} does not exist; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, ValueError, OSError) as e:
        detail = str(e) if isinstance(e, ValueError) and not isinstance(e, UnicodeDecodeError) else type(e).__name__
        raise ConfigError(f"cannot read {what} file {p} ({detail}); give a readable YAML/JSON file") from None
    try:
        return json.loads(text) if p.suffix == ".json" else load_yaml(text)
    except YamlLimitError as e:
        raise ConfigError(f"{what} file {p}: {e}") from None
    except RecursionError:
        raise ConfigError(f"{what} file {p}: nesting too deep; flatten the document") from None
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{what} file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}{at}; fix the syntax") from None
