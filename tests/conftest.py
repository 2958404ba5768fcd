import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tokendyn.format import BF16Bits, float32_to_bf16_bits
from tokendyn.recorder import Recorder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_bf16_frames(n_frames, n_tokens=64, n_dims=8, seed=0):
    """Random walk frames as raw bf16 bits, covering signs, zeros and a wide exponent range."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, (n_tokens, n_dims)).astype(np.float32)
    x[0] = 0.0
    x[1] = rng.normal(0, 1e3, n_dims)
    x[2] = -0.0
    frames = []
    for _ in range(n_frames):
        frames.append(float32_to_bf16_bits(x))
        x = x + rng.normal(0, 0.002, x.shape).astype(np.float32)
    return np.stack(frames)


def write_movie(path, frames_bits, *, steps=None, token_class=None, loss=True, **kwargs):
    n, t, d = frames_bits.shape
    steps = list(range(n)) if steps is None else steps
    if token_class is None:
        token_class = np.zeros(t, np.uint8)
    with Recorder(path, token_class=token_class, config={"test": True}, **kwargs) as rec:
        for i, s in enumerate(steps):
            extra = {"loss": float(10 - i * 0.01)} if loss else {}
            rec.capture(s, W=BF16Bits(frames_bits[i]), **extra)
    return path


@pytest.fixture
def movie(tmp_path):
    frames = random_bf16_frames(12)
    cls = np.array([0] * 40 + [1] * 14 + [2] * 10, np.uint8)
    path = write_movie(str(tmp_path / "m.h5"), frames, token_class=cls,
                       token_text=[f"t{i}" if c != 2 else "" for i, c in enumerate(cls)],
                       token_count=np.where(cls == 0, 5, 0))
    return path, frames, cls


def run_py(code, timeout=120, **kw):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw)


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tokendyn.surfaces.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def read_recorded(path):
    """A callback's movie as plain arrays: step, W, E (or None), the scalars, token_class, token_text
    (or None) and the config, read with h5py (not through tokendyn's readers)."""
    import json

    import h5py

    with h5py.File(path, "r") as f:
        out = {k: f[k][...] for k in ("step", "W", "loss", "lr", "grad_norm", "token_class")}
        out["E"] = f["E"][...] if "E" in f else None
        out["config"] = json.loads(f.attrs["config"])
        out["token_text"] = [t.decode() if isinstance(t, bytes) else t for t in f["token_text"][...]] \
            if "token_text" in f else None
        out["token_count"] = f["token_count"][...] if "token_count" in f else None
        out["W_dtype"] = f["W"].dtype
    return out


def one_line_error(capsys, argv, names):
    """Run the CLI in-process: it must exit 2 with exactly one stderr line, no traceback, naming
    ``names`` (a file or an option); returns that line."""
    from tokendyn.surfaces.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0], lines[0]
    return lines[0]


def error_without(blocked, module):
    """The TokendynError text of importing ``module`` in a fresh interpreter where the packages
    ``blocked`` are missing (``sys.modules[name] = None``); "" if none was raised."""
    code = ("import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
            + "from tokendyn.errors import TokendynError\n"
            + f"try:\n    import {module}\nexcept TokendynError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def browser(window: str = "1200,1600"):
    """A headless Debian chromium through selenium, or a skip (CI installs both and sets
    TOKENDYN_REQUIRE_BROWSER=1, so there the test cannot skip)."""
    required = os.environ.get("TOKENDYN_REQUIRE_BROWSER") == "1"
    try:
        from selenium import webdriver
    except ImportError:
        if required:
            raise
        pytest.skip("selenium is not installed")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (binary and driver_path):
        if required:
            raise RuntimeError("TOKENDYN_REQUIRE_BROWSER=1 but chromium/chromedriver are not installed")
        pytest.skip("chromium and chromedriver are not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)
