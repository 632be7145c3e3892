"""Helpers shared by the CLI commands: consoles, JSON output, option parsing, and the one renderer
of pipeline progress (rich bars with ETA on a terminal, plain timestamped lines otherwise)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..errors import ConfigError

_out: Console | None = None
_err: Console | None = None


def _width(stream) -> int | None:
    # Rich falls back to 80 columns when output is not a terminal (CI logs, pipes, files), which
    # wraps the wide parameter-efficiency tables; give them room there.
    return None if stream.isatty() else 250


def console() -> Console:
    global _out
    if _out is None:
        _out = Console(highlight=False, width=_width(sys.stdout))
    return _out


def err_console() -> Console:
    global _err
    if _err is None:
        # errors are one line; never wrap them
        _err = Console(stderr=True, highlight=False, width=_width(sys.stderr) and 10_000)
    return _err


def print_json(obj: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=None, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def quiet_optuna() -> None:
    """Optuna's per-study INFO lines would interleave with the CLI's progress. Only commands that run
    studies call this (importing prunesearch changes no logging state)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_out_dir(path: Any, option: str = "--out") -> Any:
    """Create an output/run folder private to the user (0o700) and check it is writable before any
    work starts."""
    from ..fileio import make_private_dir

    try:
        return make_private_dir(path)
    except OSError as e:
        raise ConfigError(f"output folder {path} is not writable ({e.strerror or e}); give {option} a writable directory") from None


def parse_budgets(text: str, kind: str = "params", option: str = "--budgets") -> list:
    """'0.2,0.4,0.6' -> Budgets (fractions <= 1, whole counts > 1; duplicates refused)."""
    from ..arch import Budget
    from ..errors import BudgetError

    try:
        return Budget.parse_list(text, kind, what=option)
    except BudgetError as e:
        raise ConfigError(str(e)) from None


def check_positive(args: Any, *names: str, limit: int = 1_000_000) -> None:
    """--epochs, --seeds, --threads, ...: integers in [1, limit] (one line otherwise)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and not 1 <= value <= limit:
            raise ConfigError(f"--{name.replace('_', '-')} must be an integer in [1, {limit:,}], got {value}")


def _slot(info: dict[str, Any]) -> str:
    return escape(str(info.get("slot", "")).split("@")[0])


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.2f}%"


def trial_line(kind: str, info: dict[str, Any]) -> str | None:
    """One line (rich markup) for a study worker event, or None for events shown only in bars."""
    n = f"trial {info.get('trial', '?'):>4}"
    if kind == "start":
        return f"{n} [cyan]{_slot(info)}[/] training ({int(info.get('params') or 0):,} params)"
    if kind == "done":
        return (f"{n} [cyan]{_slot(info)}[/] done: test {_pct(info.get('final_acc'))} (validation "
                f"{_pct(info.get('val_acc'))}) in {float(info.get('train_seconds') or 0):.1f} s")
    if kind == "cached":
        return f"{n} [cyan]{_slot(info)}[/] = trial {info['from']} (same training, cached result)"
    if kind == "failed":
        return f"{n} [red]failed[/]: {escape(str(info['reason']))}"
    if kind == "duplicate":
        return f"{n} skipped: duplicate of trial {info['of']}"
    if kind == "lost":
        return f"{n} was re-run elsewhere (this worker stalled); result discarded"
    if kind == "planned":
        return (f"study {escape(str(info['study']))}: {info['trials']} trials planned, {info['enqueued']} new, "
                f"{info['complete']} complete")
    return None


def print_trial_event(kind: str, info: dict[str, Any]) -> None:
    """Progress of study trials (``worker``), on stderr so stdout stays for --json."""
    line = trial_line(kind, info)
    if line is not None:
        err_console().print(_stamp() + line, soft_wrap=True)


def _stamp() -> str:
    return "" if sys.stderr.isatty() else time.strftime("[dim]%H:%M:%S[/] ")


class Display:
    """Renders a pipeline's events: rich progress bars with elapsed time and ETA on a terminal,
    plain timestamped lines otherwise; on stderr when stdout carries one JSON document (--json)."""

    def __init__(self, json_mode: bool = False) -> None:
        self.con = err_console() if json_mode else console()
        stream = sys.stderr if json_mode else sys.stdout
        self.tty = stream.isatty()
        self._progress = None
        self._base_task = None
        self._arms_task = None
        self._arms_total = 0

    def __enter__(self) -> "Display":
        if self.tty:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                                      TimeRemainingColumn(), console=self.con, transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def report_line(self, paths: dict[str, str] | None) -> None:
        """Where a run's report went (its Markdown), or why it was not written."""
        if paths:
            self.line(f"report: {paths.get('error') or paths.get('md') or next(iter(paths.values()), '')}")

    def line(self, text: str) -> None:
        target = self._progress.console if self._progress is not None else self.con
        target.print(("" if self.tty else _stamp()) + text, highlight=False, soft_wrap=True)

    # the pipeline's event sink
    def __call__(self, event: Any) -> None:
        kind = event.kind
        if kind == "step":
            i, total = event.data.get("index"), event.data.get("total")
            head = f"[bold]{i}/{total}[/] " if i is not None and total else "[bold]>[/] "
            self.line(head + escape(event.text))
        elif kind == "message":
            self.line(escape(event.text))
        elif kind == "warning":
            self.line(f"[yellow]warning:[/] {escape(event.text)}")
        elif kind == "train":
            self._train(event.name, event.progress)
        elif kind == "trial":
            self._trial(event.name, event.data)

    def _train(self, what: str, ev: Any) -> None:
        if self._progress is None:
            if ev.kind == "epoch":
                acc = f" val {_pct(ev.val_acc)} test {_pct(ev.test_acc)}" if ev.test_acc is not None else ""
                self.line(f"  {what} epoch {ev.epoch}/{ev.epochs} loss {ev.loss:.4f}{acc} "
                          f"{ev.images_per_second:.0f} img/s {ev.elapsed:.0f}s")
            return
        if ev.kind == "start":
            if self._base_task is None:
                self._base_task = self._progress.add_task(f"  {what} epochs", total=ev.epochs * max(1, ev.steps),
                                                          info="")
            self._progress.update(self._base_task, completed=(ev.epoch - 1) * max(1, ev.steps))
        elif ev.kind in ("step", "epoch") and self._base_task is not None:
            info = f"epoch {ev.epoch}/{ev.epochs} loss {ev.loss:.3f}" + (
                f" val {_pct(ev.val_acc)}" if ev.val_acc is not None else "")
            self._progress.update(self._base_task, completed=(ev.epoch - 1) * ev.steps + ev.step, info=info)
        elif ev.kind == "end" and self._base_task is not None:
            self._progress.remove_task(self._base_task)
            self._base_task = None

    def _trial(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "planned":
            self._arms_total = int(info["trials"])
            if self._progress is not None:
                self._arms_task = self._progress.add_task("  trials", total=self._arms_total,
                                                          completed=int(info["complete"]), info="")
        if kind == "epoch":
            if self._progress is not None and self._arms_task is not None:
                self._progress.update(self._arms_task, info=f"epoch {info['epoch']}/{info['epochs']}")
            return
        if kind in ("done", "cached", "failed", "duplicate") and self._progress is not None and self._arms_task is not None:
            self._progress.advance(self._arms_task)
        if kind == "start" and self._progress is not None and self._arms_task is not None:
            self._progress.update(self._arms_task, info=f"{_slot(info)}")
        line = trial_line(kind, info)
        if line is not None and (kind != "start" or self._progress is None):
            self.line("  " + line)
