"""The errors a user can fix: the CLI prints their message on one line and exits non-zero."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message; its type's name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class CnnlabError(Exception):
    """A problem with the user's input (config, data, run directory) rather than a bug."""

    exit_code = 1


class ConfigError(CnnlabError):
    """The YAML config or a --set override is invalid."""

    exit_code = 2


class DataError(CnnlabError):
    """A dataset file is missing or malformed."""


class RunDirError(CnnlabError):
    """A run directory is missing, incomplete or would be overwritten."""


class RunInterrupted(KeyboardInterrupt):
    """Training stopped from the keyboard (Ctrl+C) or by SIGTERM; the run can be resumed.

    A KeyboardInterrupt still, so a notebook's interrupt behaves as one; its message names the
    command that continues the run.
    """

    exit_code = 130

    def __init__(self, run_dir):
        super().__init__(
            f"interrupted; the run continues from its last complete epoch with: "
            f"cnnlab train --resume {run_dir}"
        )
        self.run_dir = run_dir
