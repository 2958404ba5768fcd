import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import ROOT, random_bf16_frames, run_py, write_movie

import tokendyn
from tokendyn.errors import RecorderError
from tokendyn.format import BF16Bits
from tokendyn.recorder import DenseThenSparse, Every, Recorder, Steps, parse_schedule

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_round_trip_is_bit_exact_for_torch_parameters(tmp_path, dtype):
    g = torch.Generator().manual_seed(0)
    W = torch.nn.Parameter((torch.randn(300, 24, generator=g) * 0.02).to(dtype))
    E = torch.nn.Parameter(torch.randn(300, 24, generator=g).to(dtype))
    kept_w, kept_e = [], []
    path = tmp_path / "rt.h5"
    with Recorder(path, overwrite=False) as rec:
        for step in range(30):
            with torch.no_grad():
                W.add_(torch.randn(W.shape, generator=g).to(dtype) * 1e-3)
                W[step] = float("nan") if step == 7 else W[step]
            rec.capture(step, W=W, E=E, loss=torch.tensor(1.5), lr=1e-3)
            kept_w.append(W.detach().clone())
            kept_e.append(E.detach().clone())
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        ds = tokendyn.open_movie(path)
    int_view = torch.int16 if dtype != torch.float32 else torch.int32
    expect_w = torch.stack(kept_w).view(int_view).numpy()
    if dtype == torch.bfloat16:
        got = ds.W_bits.values.view(np.int16)
        assert ds.W.dtype == np.float32 and ds.W.attrs["stored_dtype"] == "bfloat16"
    elif dtype == torch.float16:
        got = ds.W.values.astype(np.float16).view(np.int16)
    else:
        got = ds.W.values.view(np.int32)
    assert np.array_equal(got, expect_w)  # NaNs included: compared as bits
    assert np.array_equal(ds.E.values, torch.stack(kept_e).float().numpy())
    assert ds.loss.values.tolist() == [1.5] * 30


def test_random_bf16_round_trip_numpy_bits(tmp_path):
    frames = random_bf16_frames(40, 128, 16, seed=3)
    write_movie(str(tmp_path / "a.h5"), frames, steps=list(range(0, 80, 2)))
    ds = tokendyn.open_movie(tmp_path / "a.h5", chunks=7)
    assert ds.W_bits.data.chunks[0][0] == 7
    assert np.array_equal(ds.W_bits.values, frames)
    assert ds.step.values.tolist() == list(range(0, 80, 2))


def test_recorder_module_imports_no_heavy_library(tmp_path):
    """The recorder runs inside anyone's training loop: importing it, and recording a movie with it,
    loads none of torch, dask, xarray or numba."""
    path = str(tmp_path / "light.h5")
    out = run_py("import sys, numpy as np, tokendyn.recorder, tokendyn.format\n"
                 f"with tokendyn.recorder.Recorder({path!r}) as rec:\n"
                 "    for s in range(3):\n"
                 "        rec.capture(s, W=np.full((64, 8), s, np.float32), loss=1.0)\n"
                 "print(sorted({'torch', 'dask', 'xarray', 'numba'} & set(sys.modules)))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert tokendyn.open_movie(path).sizes["frame"] == 3


def test_schedules():
    assert [s for s in range(12) if s in Every(4)] == [0, 4, 8]
    assert [s for s in range(30) if s in DenseThenSparse(5, 10)] == [0, 1, 2, 3, 4, 5, 10, 20]
    assert [s for s in range(30) if s in Steps([3, 17])] == [3, 17]
    assert [s for s in range(30) if s in parse_schedule("dense:2,every:7")] == [0, 1, 2, 7, 14, 21, 28]
    assert [s for s in range(9) if s in parse_schedule(3)] == [0, 3, 6]
    with pytest.raises(ValueError):
        parse_schedule("bogus")


def test_schedule_skips_frames(tmp_path):
    W = torch.zeros(10, 4)
    with Recorder(tmp_path / "s.h5", schedule="dense:3,every:5") as rec:
        recorded = [rec.capture(s, W=W + s) for s in range(21)]
    assert sum(recorded) == 8
    ds = tokendyn.open_movie(tmp_path / "s.h5")
    assert ds.step.values.tolist() == [0, 1, 2, 3, 5, 10, 15, 20]
    assert np.array_equal(ds.W.values[:, 0, 0], [0, 1, 2, 3, 5, 10, 15, 20])


def test_refuses_to_overwrite_and_bad_usage(tmp_path):
    path = tmp_path / "o.h5"
    W = torch.zeros(10, 4)
    with Recorder(path) as rec:
        rec.capture(0, W=W)
    with pytest.raises(RecorderError, match="already exists"):
        Recorder(path)
    with Recorder(path, overwrite=True) as rec:
        rec.capture(0, W=W)
        with pytest.raises(RecorderError, match="strictly increase"):
            rec.capture(0, W=W)
        with pytest.raises(RecorderError, match="changed from"):
            rec.capture(1, W=torch.zeros(11, 4))
        with pytest.raises(RecorderError, match="changed from"):
            rec.capture(2, W=W.to(torch.bfloat16))
        with pytest.raises(RecorderError, match="not declared"):
            rec.capture(3, W=W, accuracy=0.5)
        with pytest.raises(RecorderError, match="records"):
            rec.capture(4, W=W, E=W)
    with pytest.raises(RecorderError, match="dtype torch.int64"), Recorder(tmp_path / "i.h5") as rec:
        rec.capture(0, W=torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(RecorderError, match="2-D"):
        Recorder(tmp_path / "d.h5").capture(0, W=torch.zeros(3))
    with pytest.raises(RecorderError, match="does not exist"):
        Recorder(tmp_path / "nope" / "x.h5")
    with pytest.raises(RecorderError, match="reserved"):
        Recorder(tmp_path / "r.h5").capture(0, W=W, token_count=3)
    with pytest.raises(RecorderError, match="token_class"):
        Recorder(tmp_path / "c.h5", token_class=[0, 1]).capture(0, W=W)


_W = np.zeros((4, 3), np.float32)


@pytest.mark.parametrize("options, frame, problem", [
    ({"token_class": [0, 1, 2, 7]}, {}, r"token_class values must be 0 \(live\), 1 \(dead\) or 2 \(phantom\), got 7"),
    ({"token_class": [0, -1, 2, 1]}, {}, "token_class values .* got -1"),
    ({"token_class": [0, 1, 2, 0.5]}, {}, "token_class values .* got 0.5"),
    ({"token_class": ["live", "zombie", "dead", "live"]}, {}, "unknown token class 'zombie'"),
    ({"token_class": [0, 1]}, {}, r"token_class has shape \(2,\), expected \(4,\)"),
    ({"token_text": [b"ok", b"\xff\xfe", b"b", b"c"]}, {}, r"token_text\[1\] is not valid UTF-8"),
    ({"token_text": ["a", "\udcff", "b", "c"]}, {}, r"token_text\[1\] cannot be stored as UTF-8"),
    ({"token_text": [None, "a", "b", "c"]}, {}, r"token_text\[0\] is NoneType"),
    ({"token_text": "abcd"}, {}, "not one string"),
    ({"token_text": ["a"]}, {}, "token_text has 1 entries, expected 4"),
    ({"token_count": [1, -2, 3, 4]}, {}, "negative count"),
    ({"token_count": ["a", "b", "c", "d"]}, {}, "token_count must hold whole numbers"),
    ({}, {"W_bits": 1.0}, r"\['W_bits'\] are reserved"),
    ({"scalars": ["step"]}, {}, r"\['step'\] are reserved"),
    ({"scalars": ["a/b"]}, {}, "'a/b' cannot name a scalar"),
    ({}, {"loss": "text"}, "scalar 'loss' must be a real number, got str"),
    ({}, {"loss": np.ones(3)}, "scalar 'loss' must be a real number"),
    ({}, {"step": float("nan")}, "step must be a whole number, got nan"),
    ({}, {"step": 1.5}, "step must be a whole number, got 1.5"),
    ({}, {"step": -3}, "step must be at least 0"),
    ({}, {"time": float("inf")}, "time must be a number of seconds, got inf"),
    ({}, {"time": "noon"}, "time must be a number of seconds, got 'noon'"),
    ({}, {"W": None}, "W must be a torch tensor or a numpy array, got NoneType"),
    ({}, {"W": np.zeros((0, 3), np.float32)}, "at least one token"),
    ({}, {"W": np.zeros((4, 3), np.int32)}, "W: cannot record an array of dtype int32"),
    ({"config": "{nope"}, {}, "config is not JSON text"),
    ({"schedule": "bogus"}, {}, "schedule: unknown schedule 'bogus'"),
    ({"compression": "zstd"}, {}, "unknown compression 'zstd'"),
    ({"flush_seconds": float("nan")}, {}, "flush_seconds must be a positive number"),
    ({"resume_after": float("nan")}, {}, "resume_after must be a whole number"),
])
def test_bad_arguments_are_recorder_errors_naming_the_movie(tmp_path, options, frame, problem):
    path = tmp_path / "bad.h5"
    with pytest.raises(RecorderError, match=problem) as err:
        Recorder(path, **options).capture(**{"step": 0, "W": _W, **frame})
    assert err.value.path == str(path)
    assert not os.path.exists(path) and not os.path.exists(f"{path}.reserve")


def test_an_exception_before_the_first_frame_is_not_replaced_by_the_recorders(tmp_path):
    with pytest.raises(ZeroDivisionError), Recorder(tmp_path / "with.h5"):
        1 / 0
    rec = Recorder(tmp_path / "finally.h5")
    with pytest.raises(ZeroDivisionError):
        try:
            1 / 0
        finally:
            rec.close()  # as a training loop's `finally` does
    assert not os.path.exists(tmp_path / "finally.h5.lock")
    with pytest.raises(RecorderError, match="closed before any frame"):  # no exception: still said
        Recorder(tmp_path / "none.h5").close()


def test_declared_scalars_may_be_missing_in_a_frame(tmp_path):
    W = torch.zeros(5, 2)
    with Recorder(tmp_path / "s.h5", scalars=["loss", "grad_norm"]) as rec:
        rec.capture(0, W=W, loss=2.0)
        rec.capture(1, W=W, loss=1.0, grad_norm=0.5)
    ds = tokendyn.open_movie(tmp_path / "s.h5")
    assert np.isnan(ds.grad_norm.values[0]) and ds.grad_norm.values[1] == 0.5


def test_resume_drops_later_frames_and_continues(tmp_path):
    path = tmp_path / "r.h5"
    with Recorder(path) as rec:
        for s in range(10):
            rec.capture(s, W=torch.full((4, 2), float(s)), loss=float(s))
    with Recorder(path, resume_after=6) as rec:
        assert rec.last_step == 6
        with pytest.raises(RecorderError, match="strictly increase"):
            rec.capture(6, W=torch.zeros(4, 2), loss=0.0)
        for s in range(7, 12):
            rec.capture(s, W=torch.full((4, 2), 100.0 + s), loss=float(s))
    ds = tokendyn.open_movie(path)
    assert ds.step.values.tolist() == list(range(12))
    assert ds.W.values[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 107, 108, 109, 110, 111]
    assert np.all(np.diff(ds.time.values) >= 0)


def test_memory_is_bounded_by_the_buffer(tmp_path):
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    W = torch.randn(2048, 128)  # 1 MiB a frame
    with Recorder(tmp_path / "big.h5", buffer_frames=3, flush_every=50) as rec:
        for s in range(60):
            rec.capture(s, W=W)
        rss_early = proc.memory_info().rss
        for s in range(60, 600):
            rec.capture(s, W=W)
        rss_late = proc.memory_info().rss
        assert len(rec._pools["W"]._free) <= 3
    assert (rss_late - rss_early) / 2**20 < 40, "memory grew with the number of frames"
    assert tokendyn.open_movie(tmp_path / "big.h5").sizes["frame"] == 600


def test_writer_error_surfaces_on_next_call(tmp_path, monkeypatch):
    path = tmp_path / "e.h5"
    rec = Recorder(path, flush_every=1)
    original = rec._writer._write_matrices

    def broken(matrices, frame):
        if frame.index == 3:
            raise OSError("simulated write failure")
        return original(matrices, frame)

    monkeypatch.setattr(rec._writer, "_write_matrices", broken)
    with pytest.raises(RecorderError, match="simulated write failure"):
        for s in range(50):
            rec.capture(s, W=torch.zeros(8, 2) + s)
            time.sleep(0.01)
    with pytest.raises(RecorderError):
        rec.close()
    ds = tokendyn.open_movie(path)
    assert ds.sizes["frame"] == 3 and ds.W.values[:, 0, 0].tolist() == [0, 1, 2]


_KILLED_WRITER = r"""
import sys, time, numpy as np
sys.path.insert(0, 'tests')
from tokendyn.recorder import Recorder
from tokendyn.format import BF16Bits
from conftest import random_bf16_frames
frames = random_bf16_frames(400, 256, 32, seed=5)
rec = Recorder(sys.argv[1], flush_every=1000, flush_seconds=1000)
for i in range(400):
    rec.capture(i, W=BF16Bits(frames[i]), loss=float(i))
    if i % 25 == 24:
        rec.flush()
        print("flushed", i + 1, flush=True)
    time.sleep(0.005)
print("done", flush=True)
"""


def test_sigkill_keeps_every_flushed_frame(tmp_path):
    path = str(tmp_path / "killed.h5")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, path], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    flushed = 0
    for line in proc.stdout:
        if line.startswith("flushed"):
            flushed = int(line.split()[1])
            if flushed >= 100:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert flushed >= 100
    frames = random_bf16_frames(400, 256, 32, seed=5)
    ds = tokendyn.open_movie(path)  # a crashed SWMR file still opens
    n = ds.sizes["frame"]
    assert n >= flushed
    assert np.array_equal(ds.W_bits.values, frames[:n])
    assert ds.step.values.tolist() == list(range(n))
    assert tokendyn.check(path).ok
    info = tokendyn.info(path)
    assert info["frames"] == n
    # plain xarray users: repair writes a clean copy that opens anywhere; the input is untouched
    before = os.stat(path).st_mtime_ns, os.path.getsize(path)
    fixed = tokendyn.repair(path)
    assert (os.stat(path).st_mtime_ns, os.path.getsize(path)) == before
    import xarray as xr
    with xr.open_dataset(fixed, engine="h5netcdf") as plain:
        assert plain.sizes["frame"] == n
        assert np.array_equal(plain.W.values, frames[:n])
    with h5py.File(fixed, "r") as f:
        assert f["step"].shape == (n,)


_FULL_DISK_WRITER = r"""
import sys, numpy as np
from tokendyn.recorder import Recorder
from tokendyn.errors import RecorderError
rec = Recorder(sys.argv[1], flush_every=2, reserve_bytes=2_000_000)
if sys.argv[2] == "hard":  # no early stop: let HDF5 itself hit ENOSPC
    rec._writer._space.check = lambda n: None
try:
    for i in range(400):
        rec.capture(i, W=np.full((256, 128), float(i), np.float32))
    rec.close()
    print("no error")
except RecorderError as exc:
    print("ERROR", exc)
"""


def _small_disk_available():
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _small_disk_available(), reason="needs 'unshare -m' (root) to mount a small disk")
@pytest.mark.parametrize("mode", ["early-stop", "hard"])
@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])  # ext4 takes direct writes (recorder._direct)
def test_full_disk_gives_clear_error_and_valid_file(tmp_path, mode, fs):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "w.py"
    script.write_text(_FULL_DISK_WRITER)
    keep = tmp_path / "copy.h5"
    if fs == "tmpfs":
        mount = f"mount -t tmpfs -o size=16m tmpfs {mnt}"
    else:
        image = tmp_path / "disk.img"
        mount = f"truncate -s 20M {image} && mkfs.ext4 -q {image} && mount -o loop {image} {mnt}"
    shell = (f"{{ {mount} || {{ echo NOMOUNT; exit 0; }}; }} && {sys.executable} {script} {mnt}/full.h5 {mode}; "
             f"cp {mnt}/full.h5 {keep}; ls {mnt}")
    out = subprocess.run(["unshare", "-m", "sh", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.stdout.startswith("NOMOUNT"):
        pytest.skip(f"cannot mount a small {fs} here: {out.stderr.strip()[:200]}")
    assert out.stdout.startswith("ERROR"), out.stdout + out.stderr
    if fs == "ext4":  # the frames went straight to disk (tmpfs takes O_DIRECT only on Linux >= 6.6)
        with h5py.File(keep, "r") as f:
            assert f["W"].id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY
    assert "full.h5: the disk is full; the movie keeps the" in out.stdout
    assert "full.h5.reserve" not in out.stdout  # the reserve was given back
    kept = int(out.stdout.split("keeps the ")[1].split()[0])
    assert tokendyn.check(keep).ok
    ds = tokendyn.open_movie(keep)
    assert ds.sizes["frame"] == kept > 50
    assert ds.W.values[:, 0, 0].tolist() == list(range(kept))


_LIVE_WRITER = r"""
import sys, time, numpy as np
from tokendyn.recorder import Recorder
rec = Recorder(sys.argv[1], flush_every=1)
for i in range(60):
    rec.capture(i, W=np.full((64, 8), float(i), np.float32), loss=float(i))
    rec.flush()
    if i == 4:
        print("ready", flush=True)
    time.sleep(0.05)
rec.close()
"""


def test_concurrent_reader_sees_new_frames(tmp_path):
    path = str(tmp_path / "live.h5")
    proc = subprocess.Popen([sys.executable, "-c", _LIVE_WRITER, path], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    ds = tokendyn.open_movie(path, live=True)
    seen = [ds.sizes["frame"]]
    deadline = time.time() + 60
    while time.time() < deadline and seen[-1] < 60:
        time.sleep(0.1)
        ds = ds.movie.refresh()
        n = ds.sizes["frame"]
        # every visible frame is complete and correct
        assert np.array_equal(ds.W.values[:, 0, 0], np.arange(n))
        seen.append(n)
    proc.wait(timeout=60)
    assert seen[0] >= 5
    assert len(set(seen)) >= 3, f"the reader did not see the movie grow: {seen}"
    assert tokendyn.refresh(ds).sizes["frame"] == 60


@pytest.mark.parametrize("kept", [True, False])
def test_program_ending_without_close_keeps_every_frame(tmp_path, kept):
    """Also when nothing refers to the recorder any more (a loop in a function that never closes it)."""
    path = str(tmp_path / "noclose.h5")
    code = ("import gc, numpy as np, sys\nfrom tokendyn.recorder import Recorder\n"
            "def record():\n"
            f"    rec = Recorder({path!r}, flush_every=1000, flush_seconds=1000)\n"
            "    for i in range(50):\n        rec.capture(i, W=np.full((256, 128), float(i), np.float32))\n"
            "    return rec\n"
            f"rec = record() if {kept} else (record(), gc.collect())\n")
    out = run_py(code, timeout=60)
    assert out.returncode == 0, out.stderr
    ds = tokendyn.open_movie(path)
    assert ds.W.values[:, 0, 0].tolist() == list(range(50))
    assert not os.path.exists(path + ".lock") and not os.path.exists(path + ".reserve")


def test_frames_of_w_lie_one_after_another_in_the_file(tmp_path):
    """The analyses map runs of consecutive frames in place. With HDF5's default 2 KiB metadata
    blocks a block landed between two frames about every 120 frames (17 breaks in 2,000); what
    remains is a 48 KiB index block now and then (2 breaks in 2,000 frames)."""
    path = str(tmp_path / "c.h5")
    with Recorder(path, token_class=np.zeros(1024, np.uint8)) as rec:
        for s in range(2000):
            rec.capture(s, W=BF16Bits(np.full((1024, 16), s, np.uint16)), loss=1.0)
    with h5py.File(path, "r") as f:
        offsets = np.array([f["W"].id.get_chunk_info_by_coord((i, 0, 0)).byte_offset for i in range(2000)])
    steps = np.diff(offsets)
    assert np.all(steps >= 1024 * 16 * 2)  # in order
    assert np.count_nonzero(steps != 1024 * 16 * 2) <= 3


@pytest.mark.parametrize("direct", [None, False])
def test_host_frames_go_straight_to_disk_unless_told_not_to(tmp_path, direct):
    import tokendyn.recorder._direct as direct_io

    path = str(tmp_path / f"d{direct}.h5")
    bits = random_bf16_frames(6, 256, 16, seed=3)
    with Recorder(path, token_class=np.zeros(256, np.uint8), direct_writes=direct) as rec:
        for s in range(6):
            rec.capture(s, W=BF16Bits(bits[s]))
    with h5py.File(path, "r") as f:
        preallocated = direct_io.DirectFrames.preallocated(f["W"])
    assert preallocated == (direct is None and direct_io.can_write_direct(path, 256 * 16 * 2))
    np.testing.assert_array_equal(tokendyn.open_movie(path).W_bits.values, bits)


def test_frames_of_other_sizes_are_not_aligned_apart_and_resumed_movies_keep_direct_writes(tmp_path):
    import tokendyn.recorder._direct as direct_io

    odd = str(tmp_path / "odd.h5")  # 1000 x 16 bf16: 32,000 bytes, not a whole number of 4 KiB blocks
    with Recorder(odd, token_class=np.zeros(1000, np.uint8)) as rec:
        for s in range(200):
            rec.capture(s, W=BF16Bits(np.full((1000, 16), s, np.uint16)))
    with h5py.File(odd, "r") as f:
        assert not direct_io.DirectFrames.preallocated(f["W"])
        offsets = np.array([f["W"].id.get_chunk_info_by_coord((i, 0, 0)).byte_offset for i in range(200)])
    assert np.count_nonzero(np.diff(offsets) != 32_000) <= 1  # no 4 KiB padding between frames

    path = str(tmp_path / "resumed.h5")
    bits = random_bf16_frames(12, 256, 16, seed=5)
    with Recorder(path, token_class=np.zeros(256, np.uint8)) as rec:
        for s in range(8):
            rec.capture(s, W=BF16Bits(bits[s]))
    with Recorder(path, resume_after=5) as rec:
        for s in range(6, 12):
            rec.capture(s, W=BF16Bits(bits[s]))
    with h5py.File(path, "r") as f:
        preallocated = direct_io.DirectFrames.preallocated(f["W"])
    assert preallocated == direct_io.can_write_direct(path, 256 * 16 * 2)
    np.testing.assert_array_equal(tokendyn.open_movie(path).W_bits.values, bits)


def test_wait_seconds_counts_the_time_capture_waits_for_a_slow_writer(tmp_path, monkeypatch):
    """With one buffer and a writer taking 0.1 s a frame, each capture after the first waits for
    it; the recorder adds that time up (the trainer reports it when it matters)."""
    import tokendyn.recorder.writer as writer

    slow = writer.FrameWriter._write_matrices

    def write_slowly(self, out, frame):
        time.sleep(0.1)
        slow(self, out, frame)

    W = np.zeros((8, 4), np.float32)
    with Recorder(str(tmp_path / "fast.h5"), buffer_frames=1) as rec:
        for step in range(6):
            rec.capture(step, W=W)
            time.sleep(0.05)
    fast_wait = rec.wait_seconds
    monkeypatch.setattr(writer.FrameWriter, "_write_matrices", write_slowly)
    with Recorder(str(tmp_path / "slow.h5"), buffer_frames=1) as rec:
        for step in range(6):
            rec.capture(step, W=W)
    assert rec.wait_seconds >= 0.25  # five captures waited for a 0.1 s write
    assert fast_wait < rec.wait_seconds / 2
