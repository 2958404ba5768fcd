import numpy as np
import pytest

from tokendyn import format as fmt
from tokendyn.sources.decode import bf16_bits_to_float32


def test_bf16_decode_is_exact_for_every_bit_pattern():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    values = bf16_bits_to_float32(bits)
    back = values.view(np.uint32) >> 16
    assert np.array_equal(back.astype(np.uint16), bits)


def test_bf16_decode_takes_any_shape_and_only_uint16():
    bits = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)[:, ::2, 1:]  # not contiguous
    values = bf16_bits_to_float32(bits)
    assert values.shape == (4, 3, 4) and values.dtype == np.float32
    assert np.array_equal(values.view(np.uint32), bits.astype(np.uint32) << 16)
    with pytest.raises(TypeError, match="uint16"):
        bf16_bits_to_float32(bits.astype(np.int32))


def test_round_to_bf16_matches_nearest_even_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 10000).astype(np.float32)
    bits = fmt.float32_to_bf16_bits(x)
    decoded = bf16_bits_to_float32(bits).astype(np.float64)
    # the nearest representable bf16: no neighbour on the lattice is closer
    up = bf16_bits_to_float32((bits + np.where(x >= 0, 1, -1).astype(np.int32)).astype(np.uint16))
    assert np.all(np.abs(decoded - x) <= np.abs(up.astype(np.float64) - x))
    assert np.all(np.abs(decoded - x) <= np.abs(x) * 2.0**-8 + 1e-45)


def test_round_to_bf16_agrees_with_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).normal(0, 0.05, 5000).astype(np.float32)
    ours = fmt.float32_to_bf16_bits(x)
    theirs = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ours, theirs)


def test_count_nonfinite():
    x = np.array([1.0, np.nan, np.inf, -np.inf, 0.0], np.float32)
    assert fmt.count_nonfinite(x, "float32") == 3
    assert fmt.count_nonfinite(fmt.float32_to_bf16_bits(x), "bfloat16") == 3


def test_class_codes():
    assert [fmt.class_code(c) for c in ("live", "dead", "phantom")] == [0, 1, 2]
    with pytest.raises(ValueError):
        fmt.class_code("zombie")
