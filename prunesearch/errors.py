"""User-facing errors.

Every error a user can cause is a :class:`PrunesearchError` whose message is ONE line that says
what was wrong, what was seen, and what to do. The CLI prints it in red and exits with code 2;
``--debug`` shows the traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PrunesearchError(Exception):
    """Base class: a mistake in input or environment that the user can fix."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages break log parsers and the CLI contract.
        super().__init__(" ".join(str(message).split()))


class ConfigError(PrunesearchError):
    """A spec, rule, recipe, architecture file or CLI option is malformed."""


class BudgetError(PrunesearchError):
    """A parameter budget that the family cannot reach."""


class DataError(PrunesearchError):
    """A dataset is missing, corrupt or unknown."""


class CheckpointError(PrunesearchError):
    """A checkpoint is corrupt, truncated or incompatible."""


class StorageError(PrunesearchError):
    """An Optuna storage or study cannot be reached or does not exist."""


class DeviceError(PrunesearchError):
    """A requested device is not available."""


class TrainingDiverged(PrunesearchError):
    """The loss became NaN or infinite."""


def suggest(name: str, known: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
