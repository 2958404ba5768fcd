"""Float64 numpy references of the analyses: the plain, obvious computation on arrays in memory.

The tests check every analysis against these (rtol 1e-6); ``benchmarks/bench_analysis.py`` times
them against the streamed numba versions. ``x`` is (frame, token, dim); ``bits`` its bf16 bits.
"""
import numpy as np


def comoving(x, ref_mask, t0, lags):
    x = x.astype(np.float64)
    c = x[:, ref_mask].mean(axis=1)
    y = x - c[:, None, :]
    step = np.full(x.shape[:2], np.nan)
    step[1:] = np.linalg.norm(np.diff(y, axis=0), axis=2)
    from_ref = np.linalg.norm(y - y[t0], axis=2)
    drift = np.full(x.shape[0], np.nan)
    drift[1:] = np.linalg.norm(np.diff(c, axis=0), axis=1)
    msd = {lag: ((y[lag:] - y[:-lag]) ** 2).sum(axis=2).mean() for lag in lags if lag < len(y)}
    return step, from_ref, drift, msd


def radial_steps(x):
    """Radial component ``a`` and radial fraction ``rho`` of each step, about the origin."""
    x = x.astype(np.float64)
    step = np.diff(x, axis=0)
    rhat = x[:-1] / np.linalg.norm(x[:-1], axis=2, keepdims=True)
    a = (step * rhat).sum(2)
    rho = a ** 2 / (step ** 2).sum(2)
    return a, rho


def cos_decay(x, lags):
    """Mean over tokens and frame pairs of cos(x(t), x(t - lag)) about the origin, per lag."""
    x = x.astype(np.float64)
    rhat = x / np.linalg.norm(x, axis=2, keepdims=True)
    return np.array([(rhat[lag:] * rhat[:-lag]).sum(2).mean() for lag in lags])


def lattice(bits):
    """Per step and token: coordinates that changed, summed |sites moved|, mean squared sites."""
    o = np.where(bits & 0x8000, -(bits & 0x7FFF).astype(np.int64), (bits & 0x7FFF).astype(np.int64))
    diff = np.abs(np.diff(o, axis=0))
    return (diff > 0).sum(2), diff.sum(2), (diff.astype(float) ** 2).mean(2)


def geometry(x, quantiles=(0.1, 0.5, 0.9)):
    """Centroid norm, mean and RMS radius, radius quantiles per frame."""
    x = x.astype(np.float64)
    c = x.mean(1)
    r = np.linalg.norm(x - c[:, None], axis=2)
    return np.linalg.norm(c, axis=1), r.mean(1), np.sqrt((r ** 2).mean(1)), np.quantile(r, quantiles, axis=1)


def principal_variances(x, classes, k):
    """Top-k eigenvalues of each class's covariance, per frame: (frame, class, k)."""
    x = x.astype(np.float64)
    codes = [c for c in np.unique(classes) if (classes == c).sum() >= 2]
    out = np.empty((x.shape[0], len(codes), k))
    for t in range(x.shape[0]):
        for j, code in enumerate(codes):
            cov = np.cov(x[t][classes == code], rowvar=False, bias=True)
            out[t, j] = np.linalg.eigvalsh(cov)[::-1][:k]
    return out


def radius(x):
    """R(t) = mean |x_i(t) - c(t)|."""
    x = x.astype(np.float64)
    return np.linalg.norm(x - x.mean(1, keepdims=True), axis=2).mean(1)
