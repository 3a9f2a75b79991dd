"""The `cnnlab` command: `app`, its commands in `app`, `cnnlab data ...` in `data`; one-line
errors and --debug in `errors`, the argument types several commands share in `options`, and
starting the Keras backend for a command in `backend`."""

from cnnlab.cli.app import app

__all__ = ["app"]
