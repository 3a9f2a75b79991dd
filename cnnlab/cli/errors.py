"""One-line errors for every command, and the --debug switch that shows tracebacks instead."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer

from cnnlab.utils.console import debugging, echo
from cnnlab.utils.errors import CnnlabError


def fail(message: str, code: int) -> None:
    echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command: Callable) -> Callable:
    """Turn errors into one line on stderr and a non-zero exit; --debug shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt as e:
            fail(str(e) or "interrupted", 130)  # RunInterrupted: with the resume command
        except CnnlabError as e:
            if debugging():
                raise
            fail(str(e), e.exit_code)
        except OSError as e:
            if debugging():
                raise
            if e.filename is None:
                fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)
            # A full disk, a folder without permission: the file, and what the system said.
            paths = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
            fail(f"{paths}: {e.strerror or e}", 1)
        except Exception as e:
            if debugging():
                raise
            fail(f"{type(e).__name__}: {e} (run with --debug for the traceback)", 1)

    return wrapper
