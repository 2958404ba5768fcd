"""Fuzz suite: broken movies (tests/fuzz_corpus.py) through the command line, and a hypothesis fuzzer
of header attributes, W shapes and dtypes through the in-process API.

For every corpus file and every command: no hang, no traceback, a non-zero exit (``check``: 1 with
``problem:`` lines, or 2 with one error line), a one-line error naming the file, input bytes unchanged.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
from conftest import ROOT
from fuzz_corpus import NOT_FILES, RANDOM_CASES, build_corpus, good_movie
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokendyn
from tokendyn.errors import TokendynError

COMMANDS = {
    "info": ["info"],
    "check": ["check", "-q"],
    "analyse comoving": ["analyse", "-q"],  # the movie, then the analysis name, are appended
    "repair": ["repair", "-q"],  # the movie, then -o and an output beside it, are appended
    "convert": ["convert", "-q"],  # the movie, then an output .zarr, are appended
    "report": ["report", "-q"],  # the movie, then -o and an output folder, are appended
    "compare": ["compare", "-q"],  # the movie, then -o and an output folder, are appended
}
# commands that may succeed on a broken file: repair makes a clean copy of what it can read
MAY_SUCCEED = {"repair"}
TIMEOUT = 60


def _sha256(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _argv(command: str, path: str, out: str) -> list[str]:
    args = [*COMMANDS[command], path]
    if command == "analyse comoving":
        args.append("comoving")
    elif command == "repair":
        args += ["-o", os.path.join(out, "repaired.h5")]
    elif command == "convert":
        args.append(os.path.join(out, "copy.zarr"))
    elif command == "report":
        args += ["-o", os.path.join(out, "report")]
    elif command == "compare":
        args += ["-o", os.path.join(out, "compare")]
    return [sys.executable, "-m", "tokendyn.surfaces.cli", *args]


def _run(command: str, path: str, out: str) -> tuple[int | None, str, str]:
    os.makedirs(out, exist_ok=True)
    try:
        done = subprocess.run(_argv(command, path, out), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, "", ""
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def matrix(corpus, tmp_path_factory):
    """Every command on every corpus file, four at a time: {(case, command): (rc, stdout, stderr, sha before, after)};
    each run writes what it writes into a folder of its own."""
    before = {name: _sha256(path) for name, path in corpus.items()}
    jobs = [(name, command) for name in corpus for command in COMMANDS]
    outs = tmp_path_factory.mktemp("fuzz-out")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda ij: _run(ij[1][1], corpus[ij[1][0]], str(outs / str(ij[0]))), enumerate(jobs)))
    return {job: (*res, before[job[0]], _sha256(corpus[job[0]])) for job, res in zip(jobs, results)}


CASE_NAMES = [
    "W is a group", "W is 0-d", "W is 2-D", "token_class 7", "token_class -1", "token_class wrong length",
    "token_text not UTF-8", "a variable named W_bits", "format attribute opaque", "format_version 9.0", "format_version garbage",
    "token scale of 2**40 rows", "complex W as float32", "compound W as float32", "zero tokens",
    "truncated to half", *RANDOM_CASES, "empty file", *NOT_FILES,
]
# Cases a fix once needed, kept here to mark any that regress: (case, command) -> the bug.
XFAIL: dict[tuple[str, str], str] = {}


def _params():
    for name in CASE_NAMES:
        for command in COMMANDS:
            reason = XFAIL.get((name, command))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, command, marks=marks, id=f"{name}-{command}")


def test_the_corpus_is_complete(corpus):
    assert sorted(corpus) == sorted(CASE_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "command"), list(_params()))
def test_the_cli_refuses_each_broken_movie_in_one_line(matrix, corpus, name, command):
    rc, out, err, sha_before, sha_after = matrix[(name, command)]
    path = corpus[name]
    assert rc is not None, f"hung for more than {TIMEOUT} s"
    assert "Traceback" not in err, err
    assert sha_after == sha_before, "the input file changed"
    if (name in RANDOM_CASES or command in MAY_SUCCEED) and rc == 0:
        return  # the flips may have missed everything that matters, or repair copied what it could read
    assert rc != 0, out
    if command == "check":
        assert rc in (1, 2), (rc, err)
        if rc == 1:
            assert "problem: " in out, out
    else:
        assert rc == 2, (rc, err)
    if rc == 2:
        assert err.count("\n") == 1 and err.endswith("\n"), err
        assert os.path.basename(path) in err, err
        assert err.startswith("tokendyn: error: "), err


# --- the hypothesis fuzzer ------------------------------------------------------------------------

_text_or_bytes = st.one_of(
    st.text(max_size=12), st.binary(max_size=12), st.integers(-(2**40), 2**40),
    st.sampled_from(["tokendyn.wmovie", "1.0", "1.9", "2.0", "0.1", "{}", '{"a": 1}']),
)
DTYPES = ["float32", "float16", "int16", "uint16", "complex64", "bool"]


@st.composite
def movies(draw):
    attrs = {}
    for key, good in (("format", "tokendyn.wmovie"), ("format_version", "1.0"), ("config", "{}")):
        value = draw(st.one_of(st.none(), st.just(good), st.just(good), _text_or_bytes))  # often right, to get past the header
        if value is not None:
            attrs[key] = value
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(DTYPES))
    label = draw(st.sampled_from([None, "float32", "float16", "bfloat16", dtype, "nonsense"]))
    n_class = draw(st.one_of(st.none(), st.integers(0, 5)))
    cls_dtype = draw(st.sampled_from(["u1", "i1", "i8", "f4"]))
    classes = None if n_class is None else draw(st.lists(st.integers(-1, 8), min_size=n_class, max_size=n_class))
    return attrs, shape, dtype, label, classes, cls_dtype


def _write(path, attrs, shape, dtype, label, classes, cls_dtype):
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = np.bytes_(value) if isinstance(value, bytes) else value  # fixed-length: NULs allowed
        w = f.create_dataset("W", data=np.zeros(shape, dtype))
        if label is not None:
            w.attrs["dtype"] = label
        if classes is not None:
            f.create_dataset("token_class", data=np.asarray(classes).astype(cls_dtype))
        n_frames = shape[0] if shape else 0
        f.create_dataset("step", data=np.arange(n_frames, dtype="i8"))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(movies())
def test_only_tokendyn_errors_escape_the_api(movie):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzzed.h5")
        _write(path, *movie)
        before = _sha256(path)
        try:
            ds = tokendyn.open_movie(path)
            ds.W.values
        except TokendynError:
            pass
        report = tokendyn.check(path)  # a report, not an exception: the file exists and is HDF5
        assert isinstance(report.problems, list)
        try:
            tokendyn.info(path)
        except TokendynError as exc:
            assert "\n" not in str(exc) and path in str(exc)
        assert _sha256(path) == before


@pytest.mark.parametrize("key", ["format", "format_version", "config"])
def test_an_opaque_header_attribute_gives_only_tokendyn_errors(tmp_path, key):
    path = good_movie(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs[key] = np.void(b"\x00ab")
    for call in (tokendyn.open_movie, tokendyn.info):
        try:
            call(path)
        except TokendynError:
            pass
    assert not tokendyn.check(path).ok
