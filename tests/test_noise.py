"""Noise specs: parsing, bad input, determinism per sample index and the statistics of each kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kdsnn.errors import KdsnnError
from kdsnn.noise import NOISE_KINDS, NoiseSpec, apply_noise, apply_noise_batch, parse_noise

kinds = st.sampled_from(sorted(NOISE_KINDS))
levels = st.floats(0.0, 1.0, allow_nan=False)
images = st.builds(
    lambda seed, shape: np.random.default_rng(seed).random(shape, dtype=np.float32),
    st.integers(0, 2**32 - 1), st.sampled_from([(1, 8, 8), (3, 4, 5), (28, 28), (7,)]))


def test_parse_valid_and_roundtrip():
    s = parse_noise("gaussian:0.1")
    assert s == NoiseSpec("gaussian", 0.1)
    assert str(s) == "gaussian:0.1"
    assert parse_noise(str(s)) == s
    assert parse_noise(" Salt-Pepper:0.05 ") == NoiseSpec("salt_pepper", 0.05)
    assert parse_noise(s) is s


@pytest.mark.parametrize("text, words", [
    ("blur:0.1", ["unknown noise type", "gaussian", "salt_pepper", "uniform", "speckle", "poisson"]),
    ("gaussian:1.5", ["out of range", "[0, 1]"]),
    ("gaussian:-0.1", ["out of range"]),
    ("gaussian:nan", ["out of range"]),
    ("gaussian:abc", ["not a number"]),
    ("gaussian", ["TYPE:LEVEL"]),
    ("gaussian:", ["TYPE:LEVEL"]),
])
def test_parse_bad_input_is_one_line(text, words):
    with pytest.raises(KdsnnError) as e:
        parse_noise(text)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_spec_constructor_validates():
    with pytest.raises(KdsnnError, match="valid types"):
        NoiseSpec("pink", 0.1)
    with pytest.raises(KdsnnError, match="out of range"):
        NoiseSpec("uniform", 2.0)


@settings(max_examples=60, deadline=None)
@given(kinds, images, st.integers(0, 1000), st.integers(0, 10**6))
def test_level_zero_is_identity(kind, img, seed, index):
    out = apply_noise(img, NoiseSpec(kind, 0.0), seed, index)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)
    assert out is not img


@settings(max_examples=80, deadline=None)
@given(kinds, levels, images, st.integers(0, 1000), st.integers(0, 10**6))
def test_output_in_unit_range_and_deterministic(kind, level, img, seed, index):
    spec = NoiseSpec(kind, level)
    a = apply_noise(img, spec, seed, index)
    b = apply_noise(img.copy(), spec, seed, index)
    assert a.shape == img.shape
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(img, img.copy())  # input untouched


@pytest.mark.parametrize("kind", sorted(NOISE_KINDS))
def test_depends_on_seed_and_index_not_on_batch_order(kind):
    x = np.full((6, 1, 16, 16), 0.5, dtype=np.float32)
    spec = NoiseSpec(kind, 0.3)
    batch = apply_noise_batch(x, spec, seed=7)
    singles = np.stack([apply_noise(x[i], spec, 7, i) for i in range(6)])
    np.testing.assert_array_equal(batch, singles)
    perm = np.array([3, 0, 5, 1, 4, 2])
    np.testing.assert_array_equal(apply_noise_batch(x[perm], spec, 7, indices=perm), batch[perm])
    assert not np.array_equal(batch[0], batch[1])  # index matters
    assert not np.array_equal(apply_noise(x[0], spec, 8, 0), batch[0])  # seed matters


def test_torch_in_torch_out():
    t = torch.full((1, 8, 8), 0.5)
    out = apply_noise(t, "gaussian:0.2", seed=1, index=2)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), apply_noise(t.numpy(), "gaussian:0.2", 1, 2))


def _residual(kind, level, value=0.5, n=200_000):
    x = np.full(n, value, dtype=np.float32)
    return apply_noise(x, NoiseSpec(kind, level), seed=0, index=0) - x


def test_gaussian_statistics():
    r = _residual("gaussian", 0.1)  # 5 sigma from the clip bounds: clipping is negligible
    assert abs(r.mean()) < 2e-3
    assert abs(r.std() - 0.1) < 2e-3


def test_uniform_statistics():
    r = _residual("uniform", 0.2)
    assert r.min() >= -0.2 - 1e-6 and r.max() <= 0.2 + 1e-6
    assert abs(r.var() - 0.2**2 / 3) < 3e-4


def test_salt_pepper_statistics():
    x = np.full(200_000, 0.5, dtype=np.float32)
    out = apply_noise(x, NoiseSpec("salt_pepper", 0.1), 0, 0)
    hit = out != 0.5
    assert abs(hit.mean() - 0.1) < 3e-3
    assert set(np.unique(out[hit])) == {0.0, 1.0}
    assert abs((out[hit] == 1.0).mean() - 0.5) < 0.02


def test_speckle_statistics_scale_with_intensity():
    r = _residual("speckle", 0.2, value=0.25)
    assert abs(r.std() - 0.2 * 0.25) < 1e-3
    assert np.all(_residual("speckle", 0.5, value=0.0) == 0)  # black stays black


def test_poisson_statistics():
    level = 0.01  # 100 photons at white; at 0.3: mean 30 photons
    out = _residual("poisson", level, value=0.3) + np.float32(0.3)
    assert abs(out.mean() - 0.3) < 2e-3
    assert abs(out.var() - 0.3 * level) < 2e-4
    assert np.allclose(out / level, np.round(out / level), atol=1e-3)  # whole photon counts
