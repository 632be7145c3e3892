"""Atomic, weights_only-loadable training checkpoints.

Everything needed to continue a run bit for bit is stored as tensors and plain Python values (no
pickled objects), so ``torch.load(..., weights_only=True)`` can read it: model and optimiser state
dicts, the epoch, the CPU/CUDA RNG states and the augmentation generator state (uint8 tensors), the
history so far and a fingerprint of the run (recipe, seed, data) that a resume must match.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

FORMAT = 1
LAST = "last.pt"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically (the one writer, ``prunesearch.fileio.atomic_write``):
    a crash mid-write leaves the previous checkpoint intact."""
    from ..fileio import atomic_write

    # PRUNESEARCH_KILL_AT=checkpoint-write kills after the temp file is written, before the rename
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f), kill_at="checkpoint-write")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a corrupt, truncated or foreign file raises
    :class:`CheckpointError` naming the file and what to do."""
    path = Path(path)
    what = "delete it to start the run over, or restore a good copy"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or start without resuming") from None
    except Exception as e:  # zip/pickle/EOF errors on truncated or garbage files
        msg = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {msg[:120]}); {what}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        seen = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} is not a prunesearch training checkpoint (format {seen!r}, expected {FORMAT}); {what}")
    return state


def rng_state(aug_generator: torch.Generator) -> dict[str, Any]:
    """All random state a run consumes, as tensors: torch CPU, every CUDA device, augmentation."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "aug": aug_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], aug_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    aug_generator.set_state(state["aug"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
