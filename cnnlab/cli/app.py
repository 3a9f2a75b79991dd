"""The `cnnlab` command. Thin: each command parses its arguments, calls one function of the
Python API (cnnlab.api) and prints the result.

TensorFlow takes seconds to import, so `cnnlab --help` and config errors never import it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cnnlab.cli import deploy, infer, study
from cnnlab.cli import train as training
from cnnlab.cli.data import data_app
from cnnlab.utils.console import set_debug

app = typer.Typer(
    help="Image-classification experiments with Keras: YAML in, trained and evaluated run out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
) -> None:
    set_debug(debug)


# In the order `cnnlab --help` lists them.
for name, command in (
    ("train", training.train),
    ("evaluate", infer.evaluate),
    ("predict-csv", infer.predict_csv),
    ("predict", infer.predict),
    ("explain", infer.explain),
    ("export", deploy.export),
    ("serve", deploy.serve),
    ("compare", study.compare),
    ("summary", study.summary),
    ("tune", study.tune),
    ("lr-find", study.lr_find),
    ("check", training.check),
    ("init", training.init),
):
    app.command(name)(command)


if __name__ == "__main__":  # pragma: no cover
    app()
