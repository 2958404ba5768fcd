"""Which centre each radius-like variable of cloud_geometry and inhale is measured from.

Every variable that depends on a centre names it in ``attrs["centre"]``; the planted movies here
put the centre where the truth is known (a cloud offset from the origin, two classes far apart),
and a float64 numpy reference checks that the numbers are about the centre the attribute names.
"""
from __future__ import annotations

import numpy as np
import pytest

import tokendyn
from tokendyn import format as fmt
from tokendyn import synthetic
from tokendyn.analysis import cloud_geometry, inhale
from tokendyn.analysis.geometry import CENTRES
from tokendyn.recorder import Recorder

SELECTED = "centroid of the selected tokens"


def two_clouds(path, *, n: int = 60, dim: int = 5, frames: int = 4, gap: float = 10.0, seed: int = 0) -> np.ndarray:
    """Live tokens about +gap, dead ones about -gap on the first axis (unit spread); returns W."""
    rng = np.random.default_rng(seed)
    cls = np.where(np.arange(n) < n // 2, fmt.CLASS_LIVE, fmt.CLASS_DEAD).astype(np.uint8)
    shift = np.where(cls == fmt.CLASS_LIVE, gap, -gap)[:, None] * np.eye(dim)[0]
    w = (shift + rng.normal(size=(frames, n, dim)) * np.linspace(0.5, 1.5, dim)).astype(np.float32)
    with Recorder(path, token_class=cls) as rec:
        for t in range(frames):
            rec.capture(t, W=w[t])
    return w


def test_every_centred_geometry_variable_names_its_centre(tmp_path):
    path = tmp_path / "two.h5"
    two_clouds(path)
    out = cloud_geometry(tokendyn.open_movie(path), k=2, nn_frames=2)
    for name, var in out.data_vars.items():
        if name in ("nn_distance", "nonfinite_frame"):  # between tokens; a flag
            assert "centre" not in var.attrs, name
        else:
            assert var.attrs["centre"] == CENTRES[name], name
    assert set(CENTRES) <= set(out.data_vars)
    assert out.radius_mean.attrs["centre"] == SELECTED and out.attrs["centre"] == SELECTED
    assert out.principal_variance.attrs["centre"] == "centroid of each class's selected tokens"
    assert out.centroid_norm.attrs["centre"].startswith("origin")


def test_geometry_radii_are_about_the_centroid_of_the_selection(tmp_path):
    # the planted cloud's centroid sits at a random offset from the origin, its radius is planted
    path = tmp_path / "inhale.h5"
    planted = synthetic.inhale_cloud(path, frames=80, phases=((20, 30, 0.1),), expand_from=50)
    ds = tokendyn.open_movie(path)
    out = cloud_geometry(ds, k=0, nn_frames=1)
    x = ds.W.values.astype(np.float64)
    np.testing.assert_allclose(out.radius_mean.values, planted["radius"], rtol=1e-5)
    c = x.mean(1)
    np.testing.assert_allclose(out.centroid_norm.values, np.linalg.norm(c, axis=1), rtol=1e-9)
    assert np.linalg.norm(c, axis=1).min() > 0.5  # far from the origin: the centre matters
    about_origin = np.linalg.norm(x, axis=2).mean(1)
    assert np.all(np.abs(out.radius_mean.values - about_origin) > 0.1)
    # a selection's radius is about that selection's own centroid
    some = np.arange(0, 256, 3)
    part = cloud_geometry(ds, tokens=some, k=0, nn_frames=1)
    xs = x[:, some]
    np.testing.assert_allclose(part.radius_mean.values,
                               np.linalg.norm(xs - xs.mean(1, keepdims=True), axis=2).mean(1), rtol=1e-9)
    np.testing.assert_allclose(part.radius_rms.values,
                               np.sqrt((np.linalg.norm(xs - xs.mean(1, keepdims=True), axis=2) ** 2).mean(1)),
                               rtol=1e-9)


def test_principal_variances_are_about_each_class_centroid(tmp_path):
    path = tmp_path / "two.h5"
    w = two_clouds(path).astype(np.float64)
    ds = tokendyn.open_movie(path)
    out = cloud_geometry(ds, k=2, nn_frames=1)
    classes = ds.token_class.values
    for c, name in enumerate(out["class"].values):
        xc = w[:, classes == fmt.class_code(str(name))]
        yc = xc - xc.mean(1, keepdims=True)
        ref = np.array([np.sort(np.linalg.eigvalsh(f.T @ f / f.shape[0]))[::-1][:2] for f in yc])
        np.testing.assert_allclose(out.principal_variance.values[:, c], ref, rtol=1e-6)
    # about the global centroid the gap (10 each side) would dominate: a variance near 100
    assert out.principal_variance.values.max() < 5
    # the radius about the centroid of all selected tokens does see the gap
    g = w - w.mean(1, keepdims=True)
    np.testing.assert_allclose(out.radius_mean.values, np.linalg.norm(g, axis=2).mean(1), rtol=1e-9)
    assert out.radius_mean.values.min() > 9


@pytest.mark.parametrize("measure, centre", [("mean", SELECTED), ("rms", SELECTED), ("origin", "origin")])
def test_inhale_radius_is_about_the_centre_it_names(tmp_path, measure, centre):
    path = tmp_path / "two.h5"
    w = two_clouds(path).astype(np.float64)
    out = inhale(tokendyn.open_movie(path), tokens="live", measure=measure)
    live = w[:, : w.shape[1] // 2]
    about = live if measure == "origin" else live - live.mean(1, keepdims=True)
    norms = np.linalg.norm(about, axis=2)
    ref = np.sqrt((norms ** 2).mean(1)) if measure == "rms" else norms.mean(1)
    np.testing.assert_allclose(out.radius.values, ref, rtol=1e-9)
    assert out.radius.attrs["centre"] == centre and out.attrs["centre"] == centre
