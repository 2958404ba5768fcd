"""Malformed movies (the structural rules of tokendyn.format.structure): open_movie and info refuse
each with a one-line MovieFormatError naming the file, check lists it, and nothing allocates from a
declared size or prints a traceback."""
import re
import shutil

import h5py
import numpy as np
import pytest
from conftest import random_bf16_frames, write_movie

import tokendyn
from tokendyn.errors import MovieFormatError
from tokendyn.surfaces.cli import main

TOKENS, DIMS, FRAMES = 8, 4, 3
HUGE = 2**40


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("good") / "good.h5")
    return write_movie(path, random_bf16_frames(FRAMES, TOKENS, DIMS), token_text=[f"t{i}" for i in range(TOKENS)])


def _new_w(f, data=None, **kwargs):
    del f["W"]
    dset = f.create_dataset("W", data=data, **kwargs)
    return dset


def _w_group(f):
    del f["W"]
    f.create_group("W")


def _w_0d(f):
    _new_w(f, data=np.uint16(7)).attrs["dtype"] = "bfloat16"


def _w_2d(f):
    _new_w(f, data=np.zeros((FRAMES, TOKENS), np.uint16)).attrs["dtype"] = "bfloat16"


def _huge(axis):
    def mutate(f):
        shape = [FRAMES, TOKENS, DIMS]
        shape[axis] = HUGE
        _new_w(f, shape=tuple(shape), maxshape=(None, *shape[1:]), dtype="<u2", chunks=(1, 1, 1)).attrs["dtype"] = "bfloat16"
        if axis == 1:  # token_class declared as long as W says, so only the size gives it away
            del f["token_class"]
            f.create_dataset("token_class", shape=(HUGE,), dtype="u1", chunks=(1024,))
    return mutate


def _huge_frames(f):
    del f["step"]
    f.create_dataset("step", shape=(HUGE,), maxshape=(None,), dtype="i8", chunks=(1024,), fillvalue=-1)


def _labelled_float32(dtype):
    def mutate(f):
        _new_w(f, data=np.zeros((FRAMES, TOKENS, DIMS), dtype), maxshape=(None, TOKENS, DIMS)).attrs["dtype"] = "float32"
    return mutate


def _zero_length(axis):
    def mutate(f):
        shape = [FRAMES, TOKENS, DIMS]
        shape[axis] = 0
        _new_w(f, shape=tuple(shape), maxshape=(None, *shape[1:]), dtype="<u2").attrs["dtype"] = "bfloat16"
    return mutate


def _token_class(values, dtype="u1"):
    def mutate(f):
        del f["token_class"]
        f.create_dataset("token_class", data=np.asarray(values, dtype)).attrs["flag_meanings"] = "live dead phantom"
    return mutate


def _bad_utf8(f):
    texts = [f"t{i}".encode() for i in range(TOKENS)]
    texts[5] = b"\xff\xfe bad"
    del f["token_text"]
    f.create_dataset("token_text", data=np.array(texts, dtype=object), dtype=h5py.string_dtype("utf-8"))


def _w_bits(f):
    dset = f.create_dataset("W_bits", data=np.zeros(FRAMES), maxshape=(None,))
    dset.dims[0].attach_scale(f["frame"])


CASES = {
    "W is a group": (_w_group, "'W' is a group, not an array"),
    "W is 0-d": (_w_0d, r"W must be 3-D \(frame, token, dim\), has shape \(\)"),
    "W is 2-D": (_w_2d, r"W must be 3-D \(frame, token, dim\), has shape \(3, 8\)"),
    "2**40 tokens": (_huge(1), f"W declares {HUGE} tokens x {DIMS} dims per frame, more than a movie of"),
    "2**40 dims": (_huge(2), f"W declares {TOKENS} tokens x {HUGE} dims per frame, more than a movie of"),
    "2**40 frames": (_huge_frames, f"'step' declares {HUGE} frames, more than a movie of"),
    "compound W as float32": (_labelled_float32([("a", "<f4"), ("b", "<f4")]), "W declares dtype float32 but is stored as"),
    "complex W as float32": (_labelled_float32(np.complex64), "W declares dtype float32 but is stored as complex64"),
    "zero tokens": (_zero_length(1), r"W has a zero-length token axis \(shape \(3, 0, 4\)\)"),
    "zero dims": (_zero_length(2), r"W has a zero-length dim axis \(shape \(3, 8, 0\)\)"),
    "token_class 7": (_token_class([0] * 3 + [7] + [0] * 4), "'token_class' holds 7 at token 3; expected 0"),
    "token_class -1": (_token_class([0] * 6 + [-1, 1], "i1"), "'token_class' holds -1 at token 6; expected 0"),
    "token_class too short": (_token_class([0] * 5), r"'token_class' has shape \(5,\), expected \(8,\)"),
    "token_class too long": (_token_class([0] * 9), r"'token_class' has shape \(9,\), expected \(8,\)"),
    "token_text not UTF-8": (_bad_utf8, "'token_text' entry 5 is not valid UTF-8"),
    "a variable named W_bits": (_w_bits, "the movie stores a variable 'W_bits', a name readers give the raw bfloat16 bits"),
}


@pytest.fixture(params=list(CASES))
def malformed(request, good, tmp_path):
    mutate, words = CASES[request.param]
    path = str(tmp_path / "bad.h5")
    shutil.copy(good, path)
    with h5py.File(path, "r+") as f:
        mutate(f)
    return path, words


def test_open_movie_and_info_refuse_with_one_line(malformed):
    path, words = malformed
    for call in (tokendyn.open_movie, tokendyn.info):
        with pytest.raises(MovieFormatError, match=words) as caught:
            call(path)
        assert str(caught.value).startswith(path + ": ") and "\n" not in str(caught.value)


def test_check_lists_the_problem(malformed):
    path, words = malformed
    report = tokendyn.check(path)
    assert not report.ok
    assert any(re.search(words, p) for p in report.problems), report.problems


def test_the_cli_gives_one_line_and_no_traceback(malformed, capsys):
    path, words = malformed
    assert main(["info", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path in err and "Traceback" not in err
    assert main(["check", path, "-q"]) == 1
    assert "problem: " in capsys.readouterr().out


def test_the_rules_are_one_copy_used_by_open_movie_and_check(good, tmp_path):
    """A rule changed in tokendyn.format.structure changes what both open_movie and check say."""
    from tokendyn.format import structure

    assert structure.check_structure.__module__ == "tokendyn.format.structure"
    import tokendyn.sources.dataset as dataset
    import tokendyn.tools.inspect as inspect

    assert dataset.check_structure is structure.check_structure
    assert inspect.structure_problems is structure.structure_problems
    assert inspect.check_structure is structure.check_structure
