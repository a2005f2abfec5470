"""The robot link's wire format: msgpack maps, numpy arrays as ``{dtype, shape, bytes}``.

No pickle anywhere: a message can only decode to maps, lists, strings, bytes, numbers, bools,
``None`` and numeric numpy arrays (bool, int, uint, float), so a hostile peer cannot make the
other side run code.

Protocol (version :data:`PROTOCOL_VERSION`): the client sends one map per request, ``{"op",
"id", "session", ...}``; the server answers each with ``{"id", "ok": True, ...}`` or ``{"id",
"ok": False, "error": kind, "message": text}``. ``op`` is one of :data:`OPS`. The first request
is ``hello`` with ``version`` and ``token``; it returns the session id, the specs and the link
timeout. Any request (``heartbeat`` when idle) keeps the link alive.

Example:
    >>> import numpy as np
    >>> from hardware.wire import pack, unpack
    >>> msg = unpack(pack({"op": "send_action", "action": np.arange(4, dtype=np.float32)}))
    >>> msg["action"].dtype, msg["action"].tolist()
    (dtype('float32'), [0.0, 1.0, 2.0, 3.0])
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change; a mismatch is refused by both sides."""
MAX_MESSAGE_BYTES = 16 * 2**20
"""Largest message either side accepts (enough for a few camera images)."""
OPS = (
    "hello", "heartbeat", "get_observation", "send_action", "stop", "rearm", "reset_episode",
    "status", "bye",
)
"""The requests a server understands."""

_ARRAY_KEY = "__ndarray__"
_NUMERIC_KINDS = "biuf"


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"only numeric arrays cross the wire, got dtype {obj.dtype}")
        return {
            _ARRAY_KEY: True,
            "dtype": obj.dtype.str,
            "shape": list(obj.shape),
            "data": np.ascontiguousarray(obj).tobytes(),
        }
    if isinstance(obj, np.generic) and obj.dtype.kind in _NUMERIC_KINDS:
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the robot link: {obj!r}")


def _decode(obj: dict[str, Any]) -> Any:
    if _ARRAY_KEY not in obj:
        return obj
    dtype_str, shape, data = obj.get("dtype"), obj.get("shape"), obj.get("data")
    if not isinstance(dtype_str, str) or not isinstance(data, bytes) or not isinstance(shape, list):
        raise ValueError("malformed array on the wire: needs dtype (str), shape (list), data")
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise ValueError(f"array dtype {dtype_str!r} is not allowed on the wire (numeric only)")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValueError(f"bad array shape on the wire: {shape!r}")
    if math.prod(shape) * dtype.itemsize != len(data):
        raise ValueError(
            f"array of shape {shape} and dtype {dtype_str} needs "
            f"{math.prod(shape) * dtype.itemsize} bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # copy: writable, owned


def pack(message: dict[str, Any]) -> bytes:
    """Encodes a message map (numpy arrays and scalars included)."""
    return msgpack.packb(message, default=_encode, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    """Decodes a message map; raises ``ValueError`` on anything else."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        message = msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True)
    except ValueError:
        raise
    except Exception as err:  # msgpack's own errors (ExtraData, FormatError, StackError, ...)
        raise ValueError(f"undecodable message: {type(err).__name__}: {err}") from err
    if not isinstance(message, dict):
        raise ValueError(f"a message must be a map, got {type(message).__name__}")
    return message
