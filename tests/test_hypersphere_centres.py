"""The hypersphere walk about the centroid and about the origin, side by side: a float64 numpy
reference of its statistics, and a planted cloud that translates while its tokens walk freely
about the centroid."""
import numpy as np
import pytest
from scipy import stats

import tokendyn
from tokendyn import format as fmt
from tokendyn import synthetic
from tokendyn.analysis import hypersphere as H
from tokendyn.analysis import hypersphere_walk
from tokendyn.recorder import Recorder


def write(path, x, cls):
    """A float32 movie of positions ``x`` (frames, tokens, dim) with token classes ``cls``."""
    with Recorder(path, token_class=cls, config={"model": "test"}, overwrite=True, title="test", flush_every=50) as rec:
        for t, frame in enumerate(x):
            rec.capture(t, W=frame.astype(np.float32))


def translating_cloud(seed=3, tokens=240, dim=16, frames=80, step=0.01, speed=0.01):
    """Tokens taking free isotropic steps about their centroid (the null about the centroid) while
    the whole cloud moves at ``speed`` per frame along one direction, away from the origin.
    Returns (positions, classes): the first half "live", the rest "dead"."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(tokens, dim))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    walk = np.concatenate([y[None], y[None] + np.cumsum(rng.normal(scale=step / np.sqrt(dim),
                                                                  size=(frames - 1, tokens, dim)), axis=0)])
    walk -= walk.mean(axis=1, keepdims=True)  # centroid exactly 0 ...
    direction = rng.normal(size=dim)
    direction /= np.linalg.norm(direction)
    x = walk + (speed * np.arange(frames))[:, None, None] * direction  # ... then it translates
    cls = np.where(np.arange(tokens) < tokens // 2, fmt.CLASS_LIVE, fmt.CLASS_DEAD).astype(np.uint8)
    return x, cls


def acat(ps):
    """The Cauchy combination of p-values, written out."""
    return 0.5 - np.arctan(np.mean(np.tan((0.5 - np.asarray(ps)) * np.pi))) / np.pi


def reference(x, rows, center):
    """Float64 numpy reference of the tests about ``center`` ('centroid' of all tokens, or 'origin')."""
    x = x.astype(np.float64)
    cent = x.mean(axis=1)
    y = (x - cent[:, None, :]) if center == "centroid" else x
    y = y[:, rows]
    d = x.shape[2]
    step = np.diff(y, axis=0)
    rhat = y[:-1] / np.linalg.norm(y[:-1], axis=2, keepdims=True)
    a = (step * rhat).sum(2).ravel()
    dd = (step ** 2).sum(2)
    rho = a ** 2 / dd.ravel()
    cos = ((step[1:] * step[:-1]).sum(2) / np.sqrt(dd[1:] * dd[:-1])).ravel()
    ks = stats.kstest(rho, stats.beta(0.5, (d - 1) / 2).cdf, method="exact")
    n_out, n_in = int((a > 0).sum()), int((a < 0).sum())
    sign = stats.binomtest(n_out, n_out + n_in).pvalue
    extreme = {n_out, n_in}
    mid = sign - 0.5 * sum(stats.binom.pmf(k, n_out + n_in, 0.5) for k in extreme)
    t = stats.ttest_1samp(a, 0).pvalue
    z = cos.sum() / np.sqrt((cos ** 2).sum())
    step_p = 2 * stats.norm.sf(abs(z))
    combined = acat([ks.pvalue, mid, t, step_p])
    rms = np.sqrt(dd.mean())
    csteps = np.linalg.norm(np.diff(cent, axis=0), axis=1)
    return {"ks_statistic": ks.statistic, "ks_pvalue": ks.pvalue, "sign_pvalue": sign, "sign_mid": mid,
            "t_pvalue": t, "step_correlation_z": z, "step_correlation_pvalue": step_p, "combined_pvalue": combined,
            "outward_excess": a.mean() / rms, "outward_excess_error": a.std(ddof=1) / np.sqrt(a.size) / rms,
            "rho_mean_all": rho.mean(), "outward_fraction_all": n_out / (n_out + n_in), "step_rms": rms,
            "centroid_step": csteps, "centroid_distance": np.linalg.norm(cent, axis=1)}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    path = tmp_path_factory.mktemp("cloud") / "cloud.h5"
    x, cls = translating_cloud()
    write(path, x, cls)
    return str(path)


@pytest.mark.parametrize("center", H.CENTERS)
def test_the_new_statistics_match_a_float64_reference(cloud, center):
    ds = tokendyn.open_movie(cloud, chunks=9)
    out = hypersphere_walk(ds, center=center)
    x = ds.W.values.astype(np.float64)
    rows = np.flatnonzero(ds.token_class.values == fmt.CLASS_DEAD)
    for c in H.CENTERS:
        ref = reference(x, rows, c)
        at = {k: float(out[f"{k}_by_center"].sel(center=c)) for k in
              ("outward_excess", "outward_excess_error", "rho_mean_all", "outward_fraction_all",
               "step_rms")}
        for key, value in at.items():
            assert value == pytest.approx(ref[key], rel=1e-5), (c, key)
        p = out.pvalue_by_center.sel(center=c)
        # combined from the streamed KS p-value and the reference's others; the exact KS moves it little
        combined = float(out.combined_pvalue_by_center.sel(center=c))
        parts = [float(p.sel(test="ks")), ref["sign_mid"], ref["t_pvalue"], ref["step_correlation_pvalue"]]
        assert combined == pytest.approx(acat(parts), rel=1e-5), c
        assert combined == pytest.approx(ref["combined_pvalue"], abs=2e-3), c
        assert float(p.sel(test="sign")) == pytest.approx(ref["sign_pvalue"], rel=1e-9)
        assert float(p.sel(test="t")) == pytest.approx(ref["t_pvalue"], rel=1e-5)
        assert float(p.sel(test="step_correlation")) == pytest.approx(ref["step_correlation_pvalue"], rel=1e-5)
        if c == center:  # the unsuffixed variables are the verdict's centre's
            assert float(out.ks_pvalue) == float(p.sel(test="ks"))
            # the equal-probability histogram brackets the exact KS test: within the bounds it reports
            assert abs(float(out.ks_statistic) - ref["ks_statistic"]) <= float(out.ks_statistic_error) + 1e-12
            assert abs(float(out.ks_pvalue) - ref["ks_pvalue"]) <= float(out.ks_pvalue_error) + 1e-12
            assert float(out.ks_pvalue_error) < 2e-3 and float(out.ks_statistic_error) < 1e-5
            assert float(out.step_correlation_z) == pytest.approx(ref["step_correlation_z"], rel=1e-5)
            assert bool(out.isotropic) == (float(out.combined_pvalue) >= 0.01) == (ref["combined_pvalue"] >= 0.01)
            for key in ("outward_excess", "rho_mean_all", "t_pvalue", "sign_pvalue"):
                assert float(out[key]) == pytest.approx(ref[key], rel=1e-5), key
    ref = reference(x, rows, "origin")
    np.testing.assert_allclose(out.centroid_step.values[1:], ref["centroid_step"], rtol=1e-6)
    assert np.isnan(out.centroid_step.values[0])
    np.testing.assert_allclose(out.centroid_distance.values, ref["centroid_distance"], rtol=1e-6)
    rms = np.sqrt(np.mean(ref["centroid_step"] ** 2))
    assert float(out.centroid_step_rms) == pytest.approx(rms, rel=1e-6)
    assert float(out.centroid_step_ratio) == pytest.approx(rms / ref["step_rms"], rel=1e-5)


def test_a_translating_cloud_is_isotropic_about_the_centroid_and_not_about_the_origin(cloud):
    out = hypersphere_walk(tokendyn.open_movie(cloud))  # the default centre: the centroid
    assert out.attrs["center"] == "centroid"
    assert bool(out.isotropic) and bool(out.isotropic_by_center.sel(center="centroid"))
    assert not bool(out.isotropic_by_center.sel(center="origin")) and not bool(out.centers_agree)
    assert abs(float(out.outward_excess)) < 3 * float(out.outward_excess_error)
    origin = float(out.outward_excess_by_center.sel(center="origin"))
    assert origin > 0.1 and origin > 20 * float(out.outward_excess_error_by_center.sel(center="origin"))
    assert float(out.centroid_step_ratio) > 0.5  # the centroid moves about as far per frame as a token steps
    # headline and summary say which centre the verdict uses and that the two disagree
    head = H._headline(out)
    assert head["center"] == "centroid" and head["isotropic"] and head["isotropic_centroid"]
    assert not head["isotropic_origin"] and not head["centers_agree"]
    lines = H._summary_lines(out)
    assert "isotropic about the centroid" in lines[0][1] and "(the verdict)" in lines[0][1]
    assert "NOT isotropic about the origin" in lines[1][1] and "DISAGREE" in lines[1][1]
    about_origin = hypersphere_walk(tokendyn.open_movie(cloud), center="origin")
    assert not bool(about_origin.isotropic) and about_origin.attrs["center"] == "origin"
    assert "NOT isotropic about the origin" in H._summary_lines(about_origin)[0][1]


def test_the_default_centre_is_the_centroid_and_the_unsuffixed_names_follow_center(cloud):
    ds = tokendyn.open_movie(cloud)
    default, centroid, origin = hypersphere_walk(ds), hypersphere_walk(ds, center="centroid"), \
        hypersphere_walk(ds, center="origin")
    for name in ("combined_pvalue", "outward_excess", "ks_pvalue", "t_pvalue", "rho_mean_all"):
        assert float(default[name]) == float(centroid[name]), name
    for out, c in ((centroid, "centroid"), (origin, "origin")):
        assert float(out.combined_pvalue) == float(out.combined_pvalue_by_center.sel(center=c))
        assert float(out.outward_excess) == float(out.outward_excess_by_center.sel(center=c))
        assert float(out.t_pvalue) == float(out.pvalue_by_center.sel(center=c, test="t"))
    # both centres are computed in every pass, whichever the verdict uses
    np.testing.assert_array_equal(centroid.pvalue_by_center.values, origin.pvalue_by_center.values)


def test_a_free_walk_about_the_origin_agrees_about_both_centres_and_a_drift_is_rejected(tmp_path):
    for outward, isotropic in ((0.0, True), (0.05, False)):
        path = tmp_path / f"w{outward}.h5"
        synthetic.hypersphere_walk(path, n_tokens=200, dim=24, frames=80, outward=outward, seed=4)
        out = hypersphere_walk(tokendyn.open_movie(path))
        assert out.isotropic_by_center.values.tolist() == [isotropic, isotropic] and bool(out.centers_agree)
        assert float(out.outward_excess) == pytest.approx(outward, abs=4 * float(out.outward_excess_error))


def test_the_report_figure_draws_both_centres(cloud):
    import matplotlib

    matplotlib.use("Agg")
    figs = H._figures(hypersphere_walk(tokendyn.open_movie(cloud)), {})
    assert [f.id for f in figs] == ["hypersphere"]
    assert "DISAGREE" in figs[0].figure.axes[1].get_title()
