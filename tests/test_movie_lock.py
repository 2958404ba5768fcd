"""The writer's lock on a movie (tokendyn.movie_lock): one writer at a time, dies with its process."""
import gc
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT

from tokendyn.errors import MovieLockedError
from tokendyn.movie_lock import WriterLock, lock_path, writer_pid

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock: POSIX only")

_HOLDER = r"""
import os, sys, time
from tokendyn.movie_lock import WriterLock
lock = WriterLock.acquire(sys.argv[1])
if sys.argv[2] == "fork" and os.fork() == 0:
    print("child", os.getpid(), flush=True)  # os.fork() has returned here: the fork handlers ran
    time.sleep(60)
    os._exit(0)
print("held", flush=True)
time.sleep(60)
"""


def _hold(movie, mode="plain"):
    """A process holding the lock of ``movie``; with ``mode="fork"`` also (child pid, process)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(movie), mode], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    lines = [proc.stdout.readline().split() for _ in range(2 if mode == "fork" else 1)]
    assert ["held"] in lines
    child = [int(line[1]) for line in lines if line[0] == "child"]
    return proc, child[0] if child else None


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_second_writer_is_refused_with_the_path_and_the_pid_of_the_holder(tmp_path):
    movie = tmp_path / "m.h5"
    proc, _ = _hold(movie)
    try:
        assert writer_pid(movie) == proc.pid
        with pytest.raises(MovieLockedError, match=f"process {proc.pid} is writing") as err:
            WriterLock.acquire(movie)
        assert err.value.path == str(movie)
    finally:
        _kill(proc)


def test_the_lock_dies_with_a_killed_process_and_its_stale_file_is_reused(tmp_path):
    movie = tmp_path / "m.h5"
    proc, _ = _hold(movie)
    _kill(proc)
    assert os.path.exists(lock_path(movie))  # SIGKILL: the file stays, nobody holds it
    assert writer_pid(movie) is None
    with WriterLock.acquire(movie) as lock:
        assert lock.held and writer_pid(movie) == os.getpid()
    assert not lock.held and not os.path.exists(lock_path(movie))
    assert writer_pid(movie) is None


def test_two_locks_in_one_process_conflict_and_release_lets_the_next_one_in(tmp_path):
    movie = tmp_path / "m.h5"
    first = WriterLock.acquire(movie)
    with pytest.raises(MovieLockedError, match=str(os.getpid())):
        WriterLock.acquire(movie)
    first.release()
    first.release()  # twice is fine
    WriterLock.acquire(movie).release()


def test_a_lock_nobody_refers_to_is_released_and_leaves_no_file(tmp_path):
    movie = tmp_path / "m.h5"
    lock = WriterLock.acquire(movie)
    del lock
    gc.collect()
    assert not os.path.exists(lock_path(movie))
    WriterLock.acquire(movie).release()


def test_release_after_a_change_of_directory_removes_the_right_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    lock = WriterLock.acquire("m.h5")
    monkeypatch.chdir(tmp_path / "elsewhere")
    lock.release()
    assert not (tmp_path / "m.h5.lock").exists()


def test_a_forked_child_does_not_keep_a_killed_writers_lock(tmp_path):
    """A flock lasts while any copy of its descriptor is open: a child forked by the writer (a data
    loader worker, say) would otherwise keep the movie locked after the writer is killed."""
    movie = tmp_path / "m.h5"
    proc, child = _hold(movie, "fork")
    try:
        _kill(proc)
        os.kill(child, 0)  # the child still runs
        assert writer_pid(movie) is None
        WriterLock.acquire(movie).release()
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
