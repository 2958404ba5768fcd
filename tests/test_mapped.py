"""Stored frames read in place (the movie file's pages mapped) must equal HDF5's reads, and every
layout that cannot be mapped must fall back to reading, with the same analysis results."""
import mmap
import pickle

import h5py
import numpy as np
import pytest
from conftest import random_bf16_frames, write_movie

import tokendyn
from tokendyn import synthetic
from tokendyn.analysis import cloud_geometry, comoving_displacement, inhale, lattice_motion
from tokendyn.analysis._frames import StoredFrames
from tokendyn.sources.decode import bf16_bits_to_float32

needs_populate = pytest.mark.skipif(not hasattr(mmap, "MAP_POPULATE"), reason="maps only where MAP_POPULATE exists")


def _read(source, positions):
    return source.read(positions, np.empty((len(positions),) + source.shape[1:], source.dtype))


@needs_populate
@pytest.mark.parametrize("dtype", ["bf16", "float32"])
def test_mapped_frames_equal_hdf5_reads(tmp_path, dtype):
    path = str(tmp_path / "m.h5")
    bits = random_bf16_frames(9, 48, 8, seed=4)
    if dtype == "bf16":
        write_movie(path, bits)
    else:
        from tokendyn.recorder import Recorder
        with Recorder(path, token_class=np.zeros(48, np.uint8)) as rec:
            for t, frame in enumerate(bits):
                rec.capture(t, W=bf16_bits_to_float32(frame) * np.float32(1.1))
    source = StoredFrames(tokendyn.open_movie(path))
    with h5py.File(path, "r") as f:
        offsets = np.array([f["W"].id.get_chunk_info_by_coord((i, 0, 0)).byte_offset for i in range(9)])
    frame_bytes = 48 * 8 * source.dtype.itemsize
    runs = 0
    for start in range(9):
        for stop in range(start + 1, 10):
            positions = np.arange(start, stop)
            block = source.mapped(positions)
            # mapped exactly when the frames lie one after another in the file
            assert (block is not None) == bool(np.all(np.diff(offsets[start:stop]) == frame_bytes)), (start, stop)
            if block is not None:
                runs += stop - start > 1
                assert not block.flags.writeable and block.dtype == source.dtype
                np.testing.assert_array_equal(block, _read(source, positions))
    assert runs  # some blocks of several frames were mapped
    assert source.mapped(np.array([0, 2])) is None  # not consecutive: read instead
    # a source travels to dask workers without its map; the copy maps again on its own
    copy = pickle.loads(pickle.dumps(source))
    assert copy._frame_map is None
    np.testing.assert_array_equal(copy.mapped(np.arange(2, 5)), _read(source, np.arange(2, 5)))


@needs_populate
def test_filtered_movies_are_read_with_the_same_results(tmp_path):
    bits = random_bf16_frames(30, 40, 12, seed=2)
    plain = write_movie(str(tmp_path / "plain.h5"), bits)
    squeezed = write_movie(str(tmp_path / "gzip.h5"), bits, compression="gzip")
    assert StoredFrames(tokendyn.open_movie(plain)).mapped(np.arange(4, 5)) is not None
    assert StoredFrames(tokendyn.open_movie(squeezed)).mapped(np.arange(4, 5)) is None
    expected = lattice_motion(tokendyn.open_movie(plain, chunks=4))
    got = lattice_motion(tokendyn.open_movie(squeezed, chunks=4))
    for name in ("sites", "temperature", "freeze_step"):
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)


@pytest.mark.parametrize("analysis", [
    lambda ds: lattice_motion(ds),
    lambda ds: comoving_displacement(ds, lags=(1, 3)),
    lambda ds: inhale(ds),
    lambda ds: cloud_geometry(ds, k=3, nn_frames=2),
])
def test_analyses_agree_whether_frames_are_mapped_or_read(tmp_path, monkeypatch, analysis):
    path = str(tmp_path / "lf.h5")
    synthetic.lattice_freeze(path, n_tokens=40, dim=12, frames=25, seed=3)
    hits = []
    original = StoredFrames.mapped
    monkeypatch.setattr(StoredFrames, "mapped", lambda self, frames: hits.append(original(self, frames)) or hits[-1])
    mapped = analysis(tokendyn.open_movie(path, chunks=4)).load()
    if hasattr(mmap, "MAP_POPULATE"):
        assert any(block is not None for block in hits)  # the first run did map blocks
    hits.clear()
    monkeypatch.setattr(StoredFrames, "mapped", lambda self, frames: None)
    read = analysis(tokendyn.open_movie(path, chunks=4)).load()
    for name, var in read.data_vars.items():
        np.testing.assert_array_equal(mapped[name].values, var.values, err_msg=name)


@needs_populate
def test_frames_not_yet_written_are_mapped_once_they_are(tmp_path):
    from tokendyn.recorder import Recorder

    path = str(tmp_path / "live.h5")
    bits = random_bf16_frames(6, 16, 4, seed=1)
    rec = Recorder(path, token_class=np.zeros(16, np.uint8), swmr=True)
    try:
        for t in range(3):
            rec.capture(t, W=tokendyn.format.BF16Bits(bits[t]))
        rec.flush()
        source = StoredFrames(tokendyn.open_movie(path))
        np.testing.assert_array_equal(source.mapped(np.arange(2, 3))[0], bits[2])
        assert source.mapped(np.arange(4, 5)) is None  # not written yet
        for t in range(3, 6):
            rec.capture(t, W=tokendyn.format.BF16Bits(bits[t]))
        rec.flush()
        # asked before they existed, frames 3-5 were not remembered as missing
        for t in range(3, 6):
            np.testing.assert_array_equal(source.mapped(np.arange(t, t + 1))[0], bits[t])
    finally:
        rec.close()


@needs_populate
def test_chunk_offsets_without_a_chunk_walk_match(tmp_path, monkeypatch):
    """Where HDF5 cannot list the chunks in one walk (``chunk_iter``, HDF5 >= 1.12.3), the offsets
    come one chunk at a time, with the same frames mapped."""
    from tokendyn.analysis._mapped import FrameMap

    path = str(tmp_path / "m.h5")
    bits = random_bf16_frames(7, 24, 8, seed=5)
    write_movie(path, bits)
    walked = FrameMap(path, "W", False, np.dtype(np.uint16), bits.shape)
    assert hasattr(walked._dataset().id, "chunk_iter")  # the installed h5py walks; the other path is forced below

    class Hiding:  # the object it wraps, without ``chunk_iter``
        def __init__(self, wrapped, **replaced):
            self._wrapped, self._replaced = wrapped, replaced

        def __getattr__(self, name):
            if name == "chunk_iter":
                raise AttributeError(name)
            return self._replaced.get(name) or getattr(self._wrapped, name)

    def Dataset(dset):
        return Hiding(dset, id=Hiding(dset.id))

    one_by_one = FrameMap(path, "W", False, np.dtype(np.uint16), bits.shape)
    original = FrameMap._dataset
    monkeypatch.setattr(one_by_one, "_dataset", lambda: Dataset(original(one_by_one)))
    for start, stop in [(0, 3), (2, 7), (6, 7)]:
        np.testing.assert_array_equal(walked._offsets(start, stop), one_by_one._offsets(start, stop))
        np.testing.assert_array_equal(one_by_one.frames(np.arange(start, stop)), bits[start:stop])
    assert walked._offsets(5, 8) is None and one_by_one._offsets(5, 8) is None  # frame 7 does not exist


def _count_blocks_held(monkeypatch) -> tuple[list, list]:
    """Weak references to every block mapped, and (in a list of one) the most blocks alive at once,
    the one being mapped included, counted as each block is mapped."""
    import weakref

    alive, most = [], [0]
    original = StoredFrames.mapped

    def tracked(self, frames):
        most[0] = max(most[0], sum(ref() is not None for ref in alive) + 1)
        block = original(self, frames)
        if block is not None:
            alive.append(weakref.ref(block))
        return block

    monkeypatch.setattr(StoredFrames, "mapped", tracked)
    return alive, most


@needs_populate
def test_a_pass_holds_at_most_one_block_per_kernel_thread_and_the_next(tmp_path, monkeypatch):
    """Mapped blocks count in the resident memory: while a pass maps its next block, only the blocks
    still being worked on may be alive (a finished kernel's block must not linger in its thread)."""
    import time

    import dask

    from tokendyn.analysis._frames import stream

    path = str(tmp_path / "m.h5")
    write_movie(path, random_bf16_frames(120, 32, 8, seed=7))
    source = StoredFrames(tokendyn.open_movie(path))
    alive, most = _count_blocks_held(monkeypatch)
    # the worst case, made certain: the executor's thread keeps its call (and its arguments) a
    # moment after handing the result over
    from concurrent.futures import thread

    handed_over = thread._WorkItem.run
    monkeypatch.setattr(thread._WorkItem, "run", lambda item: (handed_over(item), time.sleep(0.005)))
    with dask.config.set(num_workers=2):
        for _ in range(5):
            out = stream(source, np.arange(120), lambda block, lead, start: int(block[lead:].sum()), per_block=2)
    assert sum(out) == int(_read(source, np.arange(120)).sum(dtype=np.int64))
    assert len(alive) == 5 * 60  # every block was mapped
    assert most[0] <= 2 + 1, most[0]


@needs_populate
@pytest.mark.parametrize("budget_blocks, most_allowed", [(4, 4), (2, 2), (100, 9)])
def test_a_pass_on_many_cores_holds_no_more_block_bytes_than_its_budget(tmp_path, monkeypatch, budget_blocks,
                                                                         most_allowed):
    """With one block per core, a many-core machine held 17 of the hypersphere's 192 MiB blocks
    (peak RSS 3.8 GB on 16 cores): the blocks alive at once must fit IN_FLIGHT_BYTES (fewer kernels
    run at once), down to one kernel and the block mapped next; where they fit, every core works."""
    import time

    import dask

    from tokendyn.analysis import _frames
    from tokendyn.analysis._frames import stream

    path = str(tmp_path / "m.h5")
    write_movie(path, random_bf16_frames(120, 32, 8, seed=7))
    source = StoredFrames(tokendyn.open_movie(path))
    block_bytes = (2 + 1) * source.frame_bytes  # per_block=2 frames and one frame of context
    monkeypatch.setattr(_frames, "IN_FLIGHT_BYTES", budget_blocks * block_bytes)
    alive, most = _count_blocks_held(monkeypatch)

    def kernel(block, lead, start):
        time.sleep(0.003)  # long enough for every thread to get a block
        return int(block[lead:].sum())

    with dask.config.set(num_workers=8):
        out = stream(source, np.arange(120), kernel, per_block=2, before=1)
    assert sum(out) == int(_read(source, np.arange(120)).sum(dtype=np.int64))
    assert len(alive) == 60
    if budget_blocks < 100:
        assert most[0] <= most_allowed, most[0]
    else:  # no cap in the way: up to 8 kernels and the next block (the counting does see more than 4)
        assert 4 < most[0] <= most_allowed, most[0]


def test_kernels_in_flight_keeps_every_core_busy_while_blocks_fit():
    from tokendyn.analysis._frames import IN_FLIGHT_BYTES, kernels_in_flight

    mib = 2**20
    assert kernels_in_flight(2, 192 * mib) == 2  # the hypersphere's blocks on 2 cores: as before
    assert kernels_in_flight(16, 192 * mib) == IN_FLIGHT_BYTES // (192 * mib) - 1
    assert kernels_in_flight(16, 10 * mib) == 16
    assert kernels_in_flight(16, 2 * IN_FLIGHT_BYTES) == 1  # one block larger than the budget: one at a time
