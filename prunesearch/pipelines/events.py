"""Progress of a pipeline, as data: the commands render it (rich bars, plain lines, JSON on stdout)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """``kind``:

    - ``step``: a named step starts (``name``, ``text``: what it does; ``data``: its index/total);
    - ``message`` / ``warning``: a line for the user (``text``);
    - ``train``: the trainer's progress (``progress`` is a ``prunesearch.train.ProgressEvent``;
      ``name`` says what trains, e.g. ``base``);
    - ``trial``: a study worker's event (``name``: start, epoch, done, cached, failed, duplicate,
      lost, waiting; ``data``: its fields).
    """

    kind: str
    name: str = ""
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    progress: Any = None


EventSink = Callable[[Event], None]


def ignore(event: Event) -> None:
    pass


def trial_events(sink: EventSink) -> Callable[[str, dict[str, Any]], None]:
    """A study worker's ``on_event(kind, info)`` as pipeline events."""
    return lambda kind, info: sink(Event("trial", name=kind, data=dict(info)))
