"""The robot link's wire format: msgpack maps, numpy arrays as ``{dtype, shape, bytes}``.

No pickle anywhere: a message can only decode to maps, lists, strings, bytes, numbers, bools,
``None`` and numeric numpy arrays (bool, int, uint, float), so a hostile peer cannot make the
other side run code.

Protocol (version :data:`PROTOCOL_VERSION`): the client sends one map per request, ``{"op",
"id", "session", ...}``; the server answers each with ``{"id", "ok": True, ...}`` or ``{"id",
"ok": False, "error": kind, "message": text}``. ``op`` is one of :data:`OPS`. The first request
is ``hello`` with ``token``, ``version`` and ``client``; it returns the session id, the specs and
the link timeout. Any request (``heartbeat`` when idle) keeps the link alive. A refusal is
``{"ok": False, "error": "refused", "reason": ..., "message": ...}`` with ``reason`` one of
:data:`REFUSAL_REASONS` (and ``retry_after_s`` when ``"rate_limited"``); a version-1 peer that
does not know ``reason`` still sees a refusal.

Sizes are bounded before anything is decoded. Requests (client → server) are small: the
server's socket drops any connection that sends more than :data:`MAX_REQUEST_BYTES` in one
message (ZeroMQ's ``ZMQ_MAXMSGSIZE``: the body is never read), and a peer without a session
may send at most :data:`MAX_HELLO_BYTES` (a ``hello`` with a token of at most
:data:`MAX_TOKEN_BYTES`). Replies may carry camera images, up to :data:`MAX_REPLY_BYTES`.

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
MAX_REPLY_BYTES = 16 * 2**20
"""Largest reply a client accepts (observations: enough for a few camera images)."""
MAX_MESSAGE_BYTES = MAX_REPLY_BYTES
"""The largest message of any kind (kept for code written against protocol 1's first release)."""
MAX_REQUEST_BYTES = 64 * 2**10
"""Largest request a server accepts from its authenticated client. Requests are commands, a few
hundred bytes (an action of 4 float32 is ~80 bytes packed); 64 KiB leaves room for action
chunks of any arm while keeping what a hostile peer can make the server hold tiny."""
MAX_HELLO_BYTES = 4 * 2**10
"""Largest message a server reads from a peer that has no session (its ``hello``)."""
MAX_TOKEN_BYTES = 1024
"""Longest token (UTF-8 bytes) a server or client accepts; a hello then fits in
:data:`MAX_HELLO_BYTES`. A random 32-byte token in hex (``openssl rand -hex 32``) is 64."""
MAX_CLIENT_NAME_CHARS = 200
"""A hello's ``client`` name (``host:pid``) is cut to this length."""
TOKEN_ENV = "ROBOLEARN_ROBOT_TOKEN"
"""The environment variable the server's command line (and ``robolearn deploy``) read the token
from, so it stays out of ``ps``."""
REFUSAL_REASONS = ("token", "version", "busy", "rate_limited", "oversized", "malformed",
                   "no_session")
"""Why a server refused a connection (the ``reason`` of a refusal)."""
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


def check_token(token: object, owner: str) -> str | None:
    """Validates a shared token: ``None`` or a non-empty string of at most
    :data:`MAX_TOKEN_BYTES` UTF-8 bytes. Returns it; raises ``ValueError``/``TypeError`` naming
    ``owner`` (e.g. ``"RobotServer token"``)."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"{owner} must be a string or None, got {type(token).__name__}")
    if not token:
        raise ValueError(f"{owner} must be a non-empty string or None (an empty token would "
                         "let anyone in); generate one with `openssl rand -hex 32`")
    size = len(token.encode())
    if size > MAX_TOKEN_BYTES:
        raise ValueError(f"{owner} is {size} bytes long; at most {MAX_TOKEN_BYTES} are allowed "
                         "(a hello must stay small). `openssl rand -hex 32` makes a 64-byte one")
    return token


def pack(message: dict[str, Any]) -> bytes:
    """Encodes a message map (numpy arrays and scalars included)."""
    return msgpack.packb(message, default=_encode, use_bin_type=True)


def unpack(data: bytes | memoryview, max_bytes: int = MAX_REPLY_BYTES) -> dict[str, Any]:
    """Decodes a message map; raises ``ValueError`` on anything else.

    Args:
        data: The encoded message.
        max_bytes: Larger messages are refused before decoding (the server passes
            :data:`MAX_REQUEST_BYTES` or :data:`MAX_HELLO_BYTES`).
    """
    if len(data) > max_bytes:
        raise ValueError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        message = msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True)
    except ValueError:
        raise
    except Exception as err:  # msgpack's own errors (ExtraData, FormatError, StackError, ...)
        raise ValueError(f"undecodable message: {type(err).__name__}: {err}") from err
    if not isinstance(message, dict):
        raise ValueError(f"a message must be a map, got {type(message).__name__}")
    return message
