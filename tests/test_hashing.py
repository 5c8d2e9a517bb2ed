"""Tests of the shared splitmix64 hash (fer_jax.hashing) and the natural sort key
(fer_jax.naturalsort), each used by two parts of the library."""
import warnings

import numpy as np
import pytest

from fer_jax.hashing import splitmix64
from fer_jax.naturalsort import natural_key

# The first outputs of Vigna's reference splitmix64.c seeded with state 0 (the state advances
# by 0x9E3779B97F4A7C15 before each output): splitmix64(k * increment) is output k + 1.
REFERENCE = (0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC)
INCREMENT = 0x9E3779B97F4A7C15


def test_splitmix64_matches_the_reference_generator():
    states = [k * INCREMENT % 2**64 for k in range(len(REFERENCE))]
    assert [splitmix64(s) for s in states] == list(REFERENCE)
    assert splitmix64(np.array(states, np.uint64)).tolist() == list(REFERENCE)


def test_splitmix64_same_values_for_ints_and_uint64_arrays():
    rng = np.random.default_rng(0)
    keys = np.concatenate([rng.integers(0, 2**63, 500, dtype=np.uint64) * np.uint64(2) + 1,
                           np.array([0, 1, 2**63, 2**64 - 1], np.uint64)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # wrapping modulo 2**64 is not an overflow warning
        hashed = splitmix64(keys)
        scalar = splitmix64(np.uint64(2**64 - 1))
    assert hashed.dtype == np.uint64 and hashed.shape == keys.shape
    assert hashed.tolist() == [splitmix64(int(k)) for k in keys]
    assert isinstance(scalar, np.uint64) and int(scalar) == splitmix64(2**64 - 1)
    assert splitmix64(keys.reshape(4, -1)).tolist() == hashed.reshape(4, -1).tolist()
    assert all(0 <= splitmix64(k) < 2**64 for k in (0, 7, 2**64 - 1))


def test_splitmix64_refuses_signed_arrays():
    with pytest.raises(TypeError, match="uint64"):
        splitmix64(np.arange(3))


def test_natural_key_orders_digit_runs_as_numbers():
    names = ["f10.png", "f2.png", "f1.png", "block_10/attn", "block_9/attn", "a", "f02b.png"]
    assert sorted(names, key=natural_key) == ["a", "block_9/attn", "block_10/attn", "f1.png",
                                              "f2.png", "f02b.png", "f10.png"]
    assert natural_key("S005_001_00000010") == ("S", 5, "_", 1, "_", 10, "")
    assert natural_key("") == ("",)
