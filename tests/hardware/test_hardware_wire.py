"""The wire format: numpy round trips, numeric arrays only, no pickle."""

from __future__ import annotations

import pickle

import msgpack
import numpy as np
import pytest

from hardware.wire import pack, unpack


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint8", "bool", ">f8"])
@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (0,)])
def test_arrays_round_trip_exactly(dtype, shape):
    arr = (np.arange(int(np.prod(shape))) % 3).astype(dtype).reshape(shape)
    out = unpack(pack({"a": arr, "nested": {"b": [arr]}}))
    for got in (out["a"], out["nested"]["b"][0]):
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
        assert got.flags.writeable


def test_nan_and_scalars_survive():
    out = unpack(pack({"a": np.array([np.nan, np.inf]), "s": np.float32(0.5), "t": (1, 2)}))
    assert np.isnan(out["a"][0]) and np.isinf(out["a"][1])
    assert out["s"] == 0.5 and out["t"] == [1, 2]


@pytest.mark.parametrize("obj", [np.array([object()]), np.array(["text"]), {1, 2}, object()])
def test_non_numeric_objects_are_not_sent(obj):
    with pytest.raises(TypeError):
        pack({"x": obj})


@pytest.mark.parametrize(
    "array",
    [
        {"__ndarray__": True, "dtype": "|O", "shape": [1], "data": b"\0" * 8},
        {"__ndarray__": True, "dtype": "<f4", "shape": [3], "data": b"\0" * 8},
        {"__ndarray__": True, "dtype": "<f4", "shape": [-1], "data": b""},
        {"__ndarray__": True, "dtype": 4, "shape": [1], "data": b"\0" * 4},
    ],
)
def test_malformed_or_object_arrays_are_refused(array):
    with pytest.raises(ValueError):
        unpack(msgpack.packb({"x": array}, use_bin_type=True))


def test_pickle_payloads_are_not_messages():
    with pytest.raises(ValueError):
        unpack(pickle.dumps({"op": "send_action"}))
    with pytest.raises(ValueError, match="map"):
        unpack(msgpack.packb([1, 2, 3]))
