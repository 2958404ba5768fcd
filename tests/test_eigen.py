"""The numba top-k symmetric eigensolver behind cloud_geometry's principal variances, against LAPACK."""
import numpy as np
import pytest

from tokendyn.analysis._eigen import top_eigenvalues


def _matrices(n, rng):
    a = rng.standard_normal((n, n))
    return {
        "covariance": a @ a.T / n,
        "indefinite": a + a.T,
        "zero": np.zeros((n, n)),
        "repeated": 3.0 * np.eye(n),
        "rank one": np.outer(a[0], a[0]),
        "tiny scale": 1e-30 * (a @ a.T),
        "huge scale": 1e30 * (a @ a.T),
        "diagonal": np.diag(a[0]),
        "clustered": np.diag(1.0 + 1e-9 * np.arange(n)) + 1e-12 * (a + a.T),
        "graded": (a @ a.T) * np.outer(np.geomspace(1, 1e-4, n), np.geomspace(1, 1e-4, n)),
    }


@pytest.mark.parametrize("n", [1, 2, 3, 5, 17, 64, 128])
def test_top_eigenvalues_match_lapack(n):
    rng = np.random.default_rng(n)
    for name, matrix in _matrices(n, rng).items():
        k = min(n, 6)
        kept = matrix.copy()
        out = np.empty(k)
        top_eigenvalues(matrix, out)
        expected = np.linalg.eigvalsh(matrix)[::-1][:k]
        scale = max(np.abs(np.linalg.eigvalsh(matrix)).max(), np.finfo(float).tiny)
        # LAPACK's own accuracy: a few units of 2^-52 of the matrix's norm
        assert np.abs(out - expected).max() <= 64 * np.finfo(float).eps * scale, name
        np.testing.assert_array_equal(matrix, kept)  # the input is left as it was


def test_top_eigenvalues_of_a_stack_and_of_float32():
    rng = np.random.default_rng(0)
    stack = np.stack([_matrices(40, rng)["covariance"] * (j + 1) for j in range(6)]).reshape(2, 3, 40, 40)
    out = np.empty((2, 3, 4))
    top_eigenvalues(stack, out)
    np.testing.assert_allclose(out, np.linalg.eigvalsh(stack)[..., ::-1][..., :4], rtol=1e-12)
    single = stack[0, 0].astype(np.float32)
    top = np.empty(4)
    top_eigenvalues(single, top)
    np.testing.assert_allclose(top, np.linalg.eigvalsh(single.astype(np.float64))[::-1][:4], rtol=1e-12)


def test_relative_accuracy_of_well_separated_top_eigenvalues():
    """Principal variances need each of the top k to rtol 1e-6 of itself, not of the norm."""
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.standard_normal((128, 128)))
    spectrum = np.geomspace(1.0, 1e-6, 128)
    matrix = (q * spectrum) @ q.T
    out = np.empty(10)
    top_eigenvalues(matrix, out)
    np.testing.assert_allclose(out, spectrum[:10], rtol=1e-10)


def test_a_matrix_with_nan_or_infinity_gives_nan():
    out = np.empty((3, 2))
    stack = np.stack([np.eye(4), np.eye(4), np.eye(4)])
    stack[0, 1, 2] = stack[0, 2, 1] = np.nan
    stack[2, 3, 3] = np.inf
    top_eigenvalues(stack, out)
    assert np.isnan(out[0]).all() and np.isnan(out[2]).all()
    np.testing.assert_allclose(out[1], [1.0, 1.0], rtol=1e-14)
