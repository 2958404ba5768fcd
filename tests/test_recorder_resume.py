"""One writer per movie (the recorder's lock), resuming a killed run, and the movie's run_id."""
import os
import signal
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import ROOT

import tokendyn
import tokendyn.format.layout
import tokendyn.recorder._movie_file as movie_file
from tokendyn.errors import MovieLockedError, RecorderError
from tokendyn.format import BF16Bits
from tokendyn.movie_lock import WriterLock, lock_path, writer_pid
from tokendyn.recorder import Recorder
from tokendyn.recorder._superblock import clear_write_flags, lookup3, read_superblock

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and SIGKILL: POSIX only")

# Records frames of value 0, 1, 2, ... (bf16 bits of 256 x 16: direct writes where the disk takes
# them; float32 64 x 8: buffered), flushing each; prints "ready" after `ready` frames, then records
# until it is killed or a line arrives on stdin.
_WRITER = r"""
import sys, time, numpy as np
from tokendyn.recorder import Recorder
from tokendyn.format import BF16Bits
path, kind, ready = sys.argv[1], sys.argv[2], int(sys.argv[3])
rec = Recorder(path, flush_every=1)
for i in range(100000):
    W = BF16Bits(np.full((256, 16), i, np.uint16)) if kind == "bf16" else np.full((64, 8), float(i), np.float32)
    rec.capture(i, W=W, loss=float(i))
    rec.flush()
    if i + 1 == ready:
        print("ready", flush=True)
        if sys.stdin.readline().strip() == "stop":
            break
    time.sleep(0.002)
rec.close()
print("closed", flush=True)
"""


def _writer(path, kind="f32", ready=5):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), kind, str(ready)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _frame_values(path):
    """The steps and the first entry of each frame (read with plain h5py: no handle stays open)."""
    with h5py.File(path, "r", swmr=True) as f:
        n = tokendyn.format.layout.complete_frames(f["step"][...])
        return f["step"][:n].tolist(), f["W"][:n, 0, 0].astype(np.float64).tolist()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_writer_on_a_live_movie_refuses_and_leaves_it_intact(tmp_path, overwrite):
    path = tmp_path / "live.h5"
    first = _writer(path)
    try:
        with pytest.raises(MovieLockedError, match=f"process {first.pid} is writing") as err:
            Recorder(path, overwrite=overwrite)
        assert err.value.path == str(path)
        assert os.path.exists(path)
        first.communicate("stop\n", timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0
    assert _frame_values(path) == (list(range(5)), list(range(5)))
    assert tokendyn.check(path).ok
    assert not os.path.exists(lock_path(path))


def test_a_killed_writer_leaves_no_live_lock(tmp_path):
    path = tmp_path / "killed.h5"
    proc = _writer(path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert writer_pid(path) is None
    with Recorder(path, overwrite=True) as rec:
        rec.capture(0, W=np.zeros((4, 2), np.float32))
    assert _frame_values(path) == ([0], [0])


@pytest.mark.parametrize("kind", ["bf16", "f32"])
def test_resume_after_sigkill_drops_later_frames_appends_and_checks(tmp_path, kind):
    path = tmp_path / f"{kind}.h5"
    proc = _writer(path, kind, ready=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with pytest.raises(OSError, match="already open for write"):  # what HDF5 alone says
        h5py.File(path, "r+").close()
    steps, _ = _frame_values(path)
    assert steps == list(range(len(steps))) and len(steps) >= 30
    with Recorder(path, resume_after=19) as rec:
        assert rec.last_step == 19 and rec.frames_written == 20
        for s in range(100, 105):
            W = BF16Bits(np.full((256, 16), s, np.uint16)) if kind == "bf16" else np.full((64, 8), float(s), np.float32)
            rec.capture(s, W=W, loss=float(s))
    expect = list(range(20)) + list(range(100, 105))
    assert _frame_values(path) == (expect, expect)
    assert tokendyn.check(path).ok
    assert read_superblock(str(path)).flags == 0  # closed cleanly: plain h5py opens it again
    h5py.File(path, "r+").close()
    assert not os.path.exists(lock_path(path)) and not os.path.exists(f"{path}.reserve")


def test_resume_of_a_movie_with_an_old_superblock_continues_without_swmr(tmp_path, monkeypatch):
    """An earlier `repair --in-place` wrote movies with a version 0 superblock: SWMR needs 3."""
    path = str(tmp_path / "old.h5")
    plain_file = h5py.File
    with monkeypatch.context() as m:
        m.setattr(movie_file.h5py, "File", lambda *a, **kw: plain_file(*a, **{**kw, "libver": "earliest"}))
        with Recorder(path, swmr=False) as rec:
            for s in range(6):
                rec.capture(s, W=np.full((8, 4), float(s), np.float32), loss=1.0)
    assert read_superblock(path).version < 3
    with pytest.warns(RuntimeWarning, match="without SWMR"), Recorder(path, resume_after=3) as rec:
        rec.capture(10, W=np.full((8, 4), 10.0, np.float32), loss=1.0)
    assert _frame_values(path) == ([0, 1, 2, 3, 10], [0, 1, 2, 3, 10])
    assert tokendyn.check(path).ok


def test_run_id_is_written_once_and_read_back_on_resume(tmp_path):
    path = tmp_path / "r.h5"
    rec = Recorder(path)
    made = rec.run_id
    assert isinstance(made, str) and len(made) == 32 and int(made, 16) >= 0
    with rec:
        rec.capture(0, W=np.zeros((4, 2), np.float32))
    with h5py.File(path, "r") as f:
        assert f.attrs["run_id"] == made
    with Recorder(path, resume_after=0) as again:
        assert again.run_id == made
        again.capture(1, W=np.zeros((4, 2), np.float32))
    assert Recorder(tmp_path / "other.h5").run_id != made
    with pytest.raises(RecorderError, match=f"this movie is run {made}, not run 0123"):
        Recorder(path, resume_after=0, expect_run_id="0123")  # a checkpoint of another run
    assert _frame_values(path)[0] == [0, 1]  # refused before anything was dropped
    with Recorder(path, resume_after=1, expect_run_id=made):
        pass
    with h5py.File(path, "r+") as f:  # a movie from before run_id
        del f.attrs["run_id"]
    with Recorder(path, resume_after=1) as old:
        assert old.run_id is None
        old.capture(2, W=np.zeros((4, 2), np.float32))
    assert tokendyn.check(path).ok


def test_failed_create_or_reopen_leaves_no_reserve_and_no_lock(tmp_path):
    path = tmp_path / "m.h5"
    rec = Recorder(path)
    path.write_bytes(b"someone else's file")  # appears before the first frame
    with pytest.raises(RecorderError, match="cannot create the movie"):
        rec.capture(0, W=np.zeros((4, 2), np.float32))
    assert not os.path.exists(f"{path}.reserve")
    with pytest.raises(RecorderError, match="before any frame"):
        rec.close()
    assert not os.path.exists(lock_path(path))
    with pytest.raises(RecorderError, match="not an HDF5 file"):
        Recorder(path, resume_after=3)
    assert not os.path.exists(f"{path}.reserve") and not os.path.exists(lock_path(path))
    assert path.read_bytes() == b"someone else's file"
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["step"] = np.arange(3)
    before = plain.read_bytes()
    with pytest.raises(RecorderError, match="cannot resume: HDF5 file without the W-movie attributes"):
        Recorder(plain, resume_after=1)
    assert plain.read_bytes() == before
    assert not os.path.exists(f"{plain}.reserve") and not os.path.exists(lock_path(plain))


def test_the_lock_is_let_go_when_the_constructor_or_the_writer_thread_fails(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    path.write_bytes(b"x")
    with pytest.raises(RecorderError, match="already exists") as failed:
        Recorder(path)
    WriterLock.acquire(path).release()  # not held by the failed recorder (kept alive by the traceback)
    del failed

    rec = Recorder(path, overwrite=True, flush_every=1)

    def broken(out, frame):
        raise OSError("simulated write failure")

    monkeypatch.setattr(rec._writer, "_write_matrices", broken)
    with pytest.raises(RecorderError, match="simulated write failure"):
        for s in range(100):
            rec.capture(s, W=np.zeros((4, 2), np.float32))
            rec.flush()
    assert writer_pid(path) is None  # let go by the writer thread, before close()
    WriterLock.acquire(path).release()
    with pytest.raises(RecorderError, match="simulated write failure"):
        rec.close()


def test_lookup3_matches_the_checksums_hdf5_writes(tmp_path):
    for libver, userblock in [("latest", 0), ("v108", 512), ("latest", 4096)]:
        path = str(tmp_path / f"{libver}{userblock}.h5")
        with h5py.File(path, "w", libver=libver, userblock_size=userblock) as f:
            f["x"] = np.arange(5)
        block = read_superblock(path)
        assert block.version >= 2 and block.offset == userblock
        with open(path, "rb") as fh:
            fh.seek(block.offset)
            raw = fh.read(block.size + 4)
        assert lookup3(raw[:block.size]) == struct.unpack("<I", raw[block.size:])[0]
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551  # lookup3.c's own test values
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_clear_write_flags_refuses_a_damaged_superblock(tmp_path):
    path = str(tmp_path / "m.h5")
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = np.arange(5)
    assert clear_write_flags(path) is False  # nothing to clear
    with open(path, "r+b") as fh:
        fh.seek(11)
        fh.write(b"\x05")  # write + SWMR-write marks, checksum left as it was
    with pytest.raises(RecorderError, match="checksum is wrong"):
        clear_write_flags(path)
