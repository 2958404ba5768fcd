"""A training run killed with SIGKILL resumes from its last periodic checkpoint to the same movie."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402

import tokendyn  # noqa: E402
from tokendyn.trainers.checkpoint import checkpoint_path  # noqa: E402

STEPS = 40

# A run slowed to about 10 steps a second, checkpointing every 0.2 s, so that it is killed mid-way.
SLOW_RUN = """
import importlib, sys, time
loop = importlib.import_module("tokendyn.trainers.loop")
original = loop.lr_at
def slow(step, **kwargs):
    time.sleep(0.05)
    return original(step, **kwargs)
loop.lr_at = slow
from tokendyn.trainers import train
train("tiny", out=sys.argv[1], steps=int(sys.argv[2]), checkpoint_every=0.2, progress=False, sample_tokens=0,
      eval_every=0)
"""
# The resume and the whole reference run each in a fresh interpreter too, as the killed run did: torch's
# CPU kernels may round differently in a process whose thread pools earlier tests have set up.
FRESH_RUN = """
import sys
from tokendyn.trainers import train
result = train("tiny", out=sys.argv[1], steps=int(sys.argv[2]), resume=sys.argv[3] == "resume", progress=False,
               sample_tokens=0, eval_every=0)
print(result.steps, result.interrupted)
"""


def _fresh_run(movie, steps, mode):
    done = subprocess.run([sys.executable, "-c", FRESH_RUN, movie, str(steps), mode], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TOKENDYN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _checkpoint_step(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


@pytest.mark.slow
def test_sigkill_then_resume_continues_to_the_same_movie(tmp_path):
    movie = str(tmp_path / "killed.h5")
    ckpt = checkpoint_path(movie)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, movie, str(STEPS)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_step(ckpt) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = _checkpoint_step(ckpt)
    assert 8 <= killed_at < STEPS

    assert _fresh_run(movie, STEPS, "resume") == [str(STEPS), "False"]
    report = tokendyn.check(movie)
    assert report.ok, report.problems
    steps = tokendyn.open_movie(movie).step.values
    assert steps.tolist() == list(range(STEPS + 1))  # strictly increasing, none lost, none twice

    whole = str(tmp_path / "whole.h5")
    _fresh_run(whole, STEPS, "new")
    resumed_w = tokendyn.open_movie(movie).W.values
    whole_w = tokendyn.open_movie(whole).W.values
    assert np.array_equal(resumed_w.view(np.uint32), whole_w.view(np.uint32))  # the same run, bit for bit
