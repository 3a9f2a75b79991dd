"""The one way cnnlab prints: a command's result lines (`echo`), how work goes (`say`, with the
"cnnlab: " prefix), notes on stderr (`note`), progress of long work (decoding thousands of
images) and tables.

In a terminal: a live bar with the count, elapsed time and time left. When output goes to a
file (CI, nohup, Slurm), a live bar would be thousands of carriage returns, so a plain line is
printed every 10% (at most one every few seconds) and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PREFIX = "cnnlab: "
_debug = False  # --debug: tracebacks and TensorFlow's start-up notices are shown


def set_debug(on: bool) -> None:
    """Show tracebacks and the libraries' start-up notices (the CLI's --debug)."""
    global _debug
    _debug = on


def debugging() -> bool:
    """Whether set_debug(True) was called."""
    return _debug


def echo(text: str = "", err: bool = False) -> None:
    """Print `text` as a line of a command's output (stderr with `err`), at once."""
    print(text, file=sys.stderr if err else sys.stdout, flush=True)


def say(message: str) -> None:
    """Tell the person running cnnlab how the work goes: 'cnnlab: message' on stdout."""
    echo(f"{PREFIX}{message}")


def warn(message: str) -> None:
    """Something the person should know that does not stop the work: 'cnnlab: warning: ...'."""
    say(f"warning: {message}")


def note(message: str) -> None:
    """A remark beside a command's output, on stderr: 'note: message'."""
    echo(f"note: {message}", err=True)


# Fewer items than this finish too fast for a report to help.
MIN_ITEMS = 500
# Plain-line mode: at most one line per this many seconds, besides the final one.
LINE_SECONDS = 5.0


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`, to be called as items finish; report as the module says."""
    if total < MIN_ITEMS:
        yield lambda n=1: None
        return
    if sys.stdout.isatty():
        with _bar(description, total) as advance:
            yield advance
        return
    start = last = time.monotonic()
    done = 0
    shown_tenth = 0

    def advance(n: int = 1) -> None:
        nonlocal done, last, shown_tenth
        done += n
        now = time.monotonic()
        tenth = done * 10 // total
        if tenth > shown_tenth and now - last >= LINE_SECONDS and done < total:
            shown_tenth, last = tenth, now
            left = (now - start) / done * (total - done)
            say(
                f"{description}: {done:,}/{total:,} ({100 * done // total}%), "
                f"{now - start:.0f} s elapsed, about {left:.0f} s left"
            )

    yield advance
    say(f"{description}: {done:,}/{total:,} in {time.monotonic() - start:.1f} s")


@contextmanager
def _bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def print_table(table) -> None:
    """Print a rich Table; piped into a file, at full width rather than folded at 80 columns."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=240)
    console.print(table)
