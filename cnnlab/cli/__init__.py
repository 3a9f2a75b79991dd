"""The `cnnlab` command: `app` registers the commands, each group in a module of its own
(`train`, `infer`, `deploy`, `study`, `data`) that parses arguments, calls cnnlab.api and
prints; one-line errors in `errors`, the argument types several commands share in `options`,
what commands print of their results in `show`."""

from cnnlab.cli.app import app

__all__ = ["app"]
