"""`repair`: a clean copy keeps everything the movie holds, never cuts a live recording short, and
leaves a movie the recorder can resume."""
import hashlib
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import ROOT, random_bf16_frames, run_cli
from test_recorder_resume import _frame_values, _writer

import tokendyn
from tokendyn.errors import MovieError, MovieLockedError
from tokendyn.recorder import Recorder
from tokendyn.recorder._superblock import read_superblock
from tokendyn.tools.repair import repair

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL: POSIX only")


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def extra_movie(tmp_path):
    """A movie with a user's own per-frame scalar, variable, root and variable attributes."""
    frames = random_bf16_frames(6, n_tokens=16, n_dims=4)
    path = str(tmp_path / "extra.h5")
    with Recorder(path, token_class=np.zeros(16, np.uint8), scalars=["loss", "my_metric"]) as rec:
        for i, bits in enumerate(frames):
            rec.capture(i, W=tokendyn.format.BF16Bits(bits), loss=1.0 + i, my_metric=0.5 * i)
    with h5py.File(path, "r+") as f:
        f.attrs["lab_note"] = "seed sweep 3"
        f.attrs["lab_number"] = 42
        f["W"].attrs["my_unit"] = "nats"
        f.create_dataset("my_table", data=np.arange(12.0).reshape(3, 4))
        f["my_table"].attrs["about"] = "a user's own variable"
    return path


@pytest.mark.parametrize("in_place", [False, True])
def test_repair_keeps_extra_variables_and_attributes(extra_movie, in_place):
    before = tokendyn.open_movie(extra_movie)
    w_before, metric_before = before.W.values, before.my_metric.values
    before.close()
    out = repair(extra_movie, in_place=in_place)
    assert out == (extra_movie if in_place else extra_movie[:-3] + ".repaired.h5")
    with h5py.File(out, "r") as f:  # plain h5py: a cleanly closed file
        assert f.attrs["lab_note"] == "seed sweep 3" and f.attrs["lab_number"] == 42
        assert f["W"].attrs["my_unit"] == "nats"
        assert np.array_equal(f["my_table"][...], np.arange(12.0).reshape(3, 4))
        assert f["my_table"].attrs["about"] == "a user's own variable"
    with tokendyn.open_movie(out) as ds:
        assert np.array_equal(ds.W.values.view(np.uint32), w_before.view(np.uint32))
        assert np.array_equal(ds.my_metric.values, metric_before)
    assert tokendyn.check(out).ok


def test_in_place_repair_of_a_live_movie_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "live.h5"
    writer = _writer(path, ready=5)
    try:
        with pytest.raises(MovieLockedError, match=f"process {writer.pid} is writing"):
            repair(str(path), in_place=True)
        r = run_cli("repair", str(path), "--in-place")
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert str(writer.pid) in r.stderr and "live.h5" in r.stderr
        writer.communicate("stop\n", timeout=60)
    finally:
        writer.kill()
    assert writer.returncode == 0
    assert _frame_values(path) == (list(range(5)), list(range(5)))  # not one frame lost to the repair


def test_a_killed_recording_repaired_in_place_resumes(tmp_path):
    path = tmp_path / "killed.h5"
    proc = _writer(path, ready=12)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    repair(str(path), in_place=True)
    assert read_superblock(str(path)).flags == 0
    assert read_superblock(str(path)).version >= 3  # SWMR needs it to append again
    with Recorder(path, resume_after=9) as rec:  # the recorder reopens it, SWMR, for appending
        for s in range(50, 53):
            rec.capture(s, W=np.full((64, 8), float(s), np.float32), loss=float(s))
    expect = list(range(10)) + [50, 51, 52]
    assert _frame_values(path) == (expect, expect)
    assert tokendyn.check(path).ok


@pytest.mark.parametrize("where", ["a directory", "a missing parent", "an existing file"])
def test_bad_output_paths_are_one_line_errors_and_leave_the_input(movie, tmp_path, where):
    path = movie[0]
    target = {"a directory": tmp_path, "a missing parent": tmp_path / "no" / "such" / "x.h5",
              "an existing file": path}[where]
    if where == "an existing file":
        target = tmp_path / "other.h5"
        target.write_bytes(b"keep me")
    digest = _sha(path)
    r = run_cli("repair", path, "-o", str(target))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert _sha(path) == digest
    if where == "an existing file":
        assert target.read_bytes() == b"keep me"
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]  # no temporary left


def test_an_unwritable_folder_is_a_one_line_error(movie, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into any folder")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = run_cli("repair", movie[0], "-o", str(locked / "x.h5"))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    finally:
        locked.chmod(0o700)


# h5py's writes fail as a full disk makes them fail, from the first block of frames on.
_FULL_DISK = r"""
import errno, sys
import h5py
import tokendyn
from tokendyn.errors import MovieError
original = h5py.Dataset.__setitem__
def full(self, key, value):
    if self.name == "/W":
        raise OSError(errno.ENOSPC, "No space left on device")
    return original(self, key, value)
h5py.Dataset.__setitem__ = full
try:
    tokendyn.repair(sys.argv[1], sys.argv[2])
except MovieError as exc:
    print("MovieError:", exc)
    sys.exit(3)
"""


def test_a_full_disk_fails_cleanly_and_leaves_nothing(movie, tmp_path):
    path = movie[0]
    digest = _sha(path)
    out = tmp_path / "copy.h5"
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, path, str(out)], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 3, (r.returncode, r.stderr[-2000:])  # a clean error, not a segfault (rc -11/139)
    assert "No space left" in r.stdout or "space" in r.stdout.lower()
    assert not out.exists() and _sha(path) == digest


def test_in_place_and_an_output_together_is_an_error(movie, tmp_path):
    with pytest.raises(MovieError, match="not both"):
        repair(movie[0], tmp_path / "x.h5", in_place=True)
