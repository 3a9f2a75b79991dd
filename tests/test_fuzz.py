"""Property-based: for any input, the config and CSV loaders load it or raise cnnlab's error."""

from __future__ import annotations

import string

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.config import Config, load_config
from cnnlab.data.kaggle_csv import read_digits_csv
from cnnlab.utils.errors import CnnlabError

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# YAML-ish text: keys the schema knows, typos of them, and values of every kind.
KEYS = ["data", "model", "train", "loader", "builder", "mnist", "kaggle_csv", "mlp", "lenet5",
        "epochs", "learning_rate", "seed", "path", "train", "test", "dropout", "units", "name",
        "epoch", "lodaer", "!!python/object:os.system", "<<", "&a", "*a"]  # fmt: skip
TOKENS = KEYS + [": ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "1e-3", "3", "-1", "null",
                 "true", "'x'", '"', "#", "\t", "~", "0.5", "nan", ".inf"]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40) | st.text(max_size=200))
def test_config_loader_loads_or_raises_config_error(tmp_path_factory, parts):
    text = parts if isinstance(parts, str) else "".join(parts)
    path = tmp_path_factory.mktemp("cfg") / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        assert isinstance(load_config(path), Config)
    except CnnlabError as e:
        assert str(e).strip()


@FUZZ
@given(
    st.lists(st.text(alphabet='0123456789,-. \tlabelpixid"abc\r', max_size=30), max_size=8)
    | st.binary(max_size=120).map(lambda b: b.decode("latin-1").split("\n"))
)
def test_csv_loader_loads_or_raises_data_error(tmp_path_factory, lines):
    header = "label,p0,p1,p2,p3"
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    path.write_bytes("\n".join([header, *lines]).encode("utf-8", "surrogateescape"))
    try:
        x, y = read_digits_csv(path, image_shape=(2, 2, 1), num_classes=10, require_label=True)
    except CnnlabError as e:
        assert str(e).startswith(str(path))
    else:
        assert x.dtype == np.uint8 and x.shape[1:] == (2, 2, 1) and len(x) == len(y) > 0


@FUZZ
@given(
    st.lists(
        st.lists(
            st.integers(-5, 300) | st.sampled_from(["", "x", "0.5", "1e2"]), min_size=3, max_size=6
        ),
        min_size=1,
        max_size=6,
    )
)
def test_csv_rows_of_mixed_values(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    body = "\n".join(",".join(str(v) for v in row) for row in rows)
    path.write_text("label,a,b,c,d\n" + body + "\n")
    try:
        x, y = read_digits_csv(path, image_shape=(2, 2, 1), num_classes=10, require_label=True)
    except CnnlabError as e:
        assert str(e).startswith(str(path))
    else:
        expected = np.array([[int(float(v)) for v in row[1:]] for row in rows])
        assert (x.reshape(len(x), -1) == expected).all()
        assert set(string.digits) >= set("".join(map(str, y)))
