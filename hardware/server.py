"""``RobotServer``: serves any :class:`~hardware.robot.Robot` backend over ZeroMQ, next to the arm.

One client (the controller) holds the robot at a time. The server

- binds ``127.0.0.1`` by default and refuses to bind any other address without a token;
- checks the token first, and cheaply, before anything else a peer asks for; refuses a client
  whose token is wrong or missing, or whose protocol version differs (and logs why);
- keeps what an unauthenticated peer can cost it small (see :class:`AuthLimits`): its socket
  drops any connection that sends a message over :data:`~hardware.wire.MAX_REQUEST_BYTES`
  before reading it (``ZMQ_MAXMSGSIZE``), a peer without a session may send at most
  :data:`~hardware.wire.MAX_HELLO_BYTES`, failures are rate limited per address and in all
  with an exponential back-off (a locked-out address gets no token check at all), and refusals
  are logged a few lines per interval plus one summary line, never a line each;
- serves the authenticated client first in the sense that matters: its requests never wait
  behind more than one (cheap) request of each other connection, so a flood of hostile hellos
  does not starve the control loop;
- stops the robot by itself when the controlling client goes silent for ``link_timeout_s``
  (no request, not even a heartbeat): the client crashed, hung or the network dropped;
- stops the robot when the client says goodbye, and stops and disconnects it at shutdown;
- never unpickles anything (see :mod:`hardware.wire`).

It handles one request at a time, in one thread: backends need not be thread-safe.

The token is a shared secret compared in constant time; it is not encryption (it crosses the
wire in clear). Outside a lab network, reach the server through an SSH tunnel or a VPN, and
filter who can reach the port at all: the limits here bound the cost of a flood, they do not
make a saturated network or CPU fast.

Command-line errors (an unknown backend or task, bad ``--params``, a port in use, a backend
that fails to connect) print one paragraph naming the flag and the fix and exit non-zero: 2 for
a bad flag, 1 when the port or the backend is the problem.

Command line (the twin; a vendor writes the same three lines around their own driver)::

    python -m hardware.server --backend twin --task reach-v3 --port 5555 --token "$TOKEN"
    ROBOLEARN_ROBOT_TOKEN=secret python -m hardware.server --host 0.0.0.0 --port 5555

Example:
    >>> from hardware import RemoteRobot, RobotServer, TwinRobot
    >>> server = RobotServer(TwinRobot("reach-v3"), port=0, token="secret")
    >>> thread = server.start_in_thread()             # binds a free port on 127.0.0.1
    >>> with RemoteRobot(port=server.port, token="secret") as robot:
    ...     obs = robot.get_observation()
    >>> obs["state"].shape
    (39,)
    >>> server.close()
"""

from __future__ import annotations

import argparse
import collections
import difflib
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from hardware import wire
from hardware.errors import RobotError
from hardware.robot import Robot, robot_label
from hardware.safety import SafeRobot, SafetyConfig

logger = logging.getLogger(__name__)

DEFAULT_PORT = 5555
TOKEN_ENV = wire.TOKEN_ENV
"""Environment variable the command line reads the token from (keeps it out of ``ps``)."""
_POLL_S = 0.05  # how often the loop looks at the shutdown flag when idle
_MAX_PEERS = 4096  # failure buckets kept; idle ones are dropped first


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``localhost``, ``127.x.x.x``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or "*": could be any interface


@dataclass
class _Session:
    id: str
    identity: bytes
    client: str
    started: float
    last_seen: float


@dataclass(frozen=True)
class AuthLimits:
    """How a :class:`RobotServer` limits peers that have no session.

    A *failure* is a request from a peer without a session that could be an attack: a wrong or
    missing token, an oversized or undecodable message, or a request that names no valid
    session. (A right token with another protocol version, or a robot busy with another client,
    is a refusal but not a failure.) Each failure takes one token from the peer's bucket (one
    per IP address) and one from the server's global bucket; buckets refill at their rate up to
    their burst. A failure that finds a bucket empty locks that peer out (the global bucket:
    every peer without a session) for ``backoff_s``, doubled at each further lockout up to
    ``max_backoff_s``; a bucket does not refill while locked, and forgets its lockouts once it
    is full again. A locked-out peer's requests are refused at once without looking at the
    token, so guessing gets at most ``peer_rate`` (per address) and ``global_rate`` (in all)
    token checks a second in the long run. The authenticated client is never limited.

    Refusals are logged at WARNING, at most ``log_lines`` lines per ``log_interval_s``; the rest
    are counted and summed up in one line at the end of the interval. While a flood lasts
    (an interval that needed a summary), the next interval logs its summary only, so a
    sustained flood costs one line per interval.

    Attributes:
        peer_burst: Failures an address may make before its first lockout.
        peer_rate: Failures per second an address earns back.
        global_burst: Failures all addresses together may make before a global lockout.
        global_rate: Failures per second earned back globally.
        backoff_s: First lockout, seconds.
        max_backoff_s: Longest lockout, seconds.
        log_interval_s: The refusal log's interval, seconds.
        log_lines: Refusal lines logged one by one per interval (then one summary line).

    Example:
        >>> AuthLimits(peer_burst=3).peer_burst
        3
        >>> AuthLimits(backoff_s=0)
        Traceback (most recent call last):
        ...
        ValueError: AuthLimits.backoff_s must be a finite number > 0. Got backoff_s=0
    """

    peer_burst: int = 5
    peer_rate: float = 0.5
    global_burst: int = 30
    global_rate: float = 5.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    log_interval_s: float = 10.0
    log_lines: int = 5

    def __post_init__(self) -> None:
        for name in ("peer_burst", "global_burst", "log_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AuthLimits.{name} must be an int >= 1. Got {name}={value!r}")
        for name in ("peer_rate", "global_rate", "backoff_s", "max_backoff_s", "log_interval_s"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not (0 < value < math.inf)):
                raise ValueError(f"AuthLimits.{name} must be a finite number > 0. Got "
                                 f"{name}={value!r}")
        if self.max_backoff_s < self.backoff_s:
            raise ValueError(f"AuthLimits.max_backoff_s must be >= backoff_s. Got "
                             f"max_backoff_s={self.max_backoff_s!r}, backoff_s={self.backoff_s!r}")


class _Bucket:
    """A token bucket of failures with an exponential lockout (see :class:`AuthLimits`)."""

    __slots__ = ("tokens", "stamp", "strikes", "locked_until")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.stamp = now
        self.strikes = 0
        self.locked_until = -math.inf

    def refill(self, burst: int, rate: float, now: float) -> None:
        start = max(self.stamp, self.locked_until)  # no refill while locked out
        if now > start:
            self.tokens = min(float(burst), self.tokens + (now - start) * rate)
        self.stamp = now
        if self.tokens >= burst:
            self.strikes = 0  # quiet long enough: earlier lockouts are forgiven

    def fail(self, burst: int, rate: float, limits: AuthLimits, now: float) -> float:
        """Counts one failure; returns the lockout it starts (seconds), 0 for none."""
        self.refill(burst, rate, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        lockout = min(limits.max_backoff_s, limits.backoff_s * 2.0**min(self.strikes, 30))
        self.strikes += 1
        self.locked_until = now + lockout
        return lockout


class _FailureLimiter:
    """Per-address and global failure buckets."""

    def __init__(self, limits: AuthLimits, now: float | None = None) -> None:
        self.limits = limits
        self._global = _Bucket(limits.global_burst, time.monotonic() if now is None else now)
        self._peers: dict[str, _Bucket] = {}

    def locked_for(self, peer: str, now: float) -> tuple[float, str]:
        """``(seconds left, "global" | "peer")`` when ``peer`` is locked out, else ``(0, "")``."""
        left = self._global.locked_until - now
        if left > 0:
            return left, "global"
        bucket = self._peers.get(peer)
        if bucket is not None and bucket.locked_until > now:
            return bucket.locked_until - now, "peer"
        return 0.0, ""

    def fail(self, peer: str, now: float) -> tuple[float, str]:
        """Counts a failure of ``peer``; returns the lockout it started, as :meth:`locked_for`."""
        limits = self.limits
        bucket = self._peers.get(peer)
        if bucket is None:
            if len(self._peers) >= _MAX_PEERS:
                self.prune(now)
            bucket = self._peers[peer] = _Bucket(limits.peer_burst, now)
        lockout = bucket.fail(limits.peer_burst, limits.peer_rate, limits, now)
        global_lockout = self._global.fail(limits.global_burst, limits.global_rate, limits, now)
        if global_lockout:
            return global_lockout, "global"
        return (lockout, "peer") if lockout else (0.0, "")

    def prune(self, now: float) -> None:
        """Forgets addresses that are not locked out and have earned all their failures back
        (and, past :data:`_MAX_PEERS`, the oldest unlocked ones)."""
        limits = self.limits
        for peer, bucket in list(self._peers.items()):
            bucket.refill(limits.peer_burst, limits.peer_rate, now)
            if bucket.locked_until <= now and bucket.tokens >= limits.peer_burst:
                del self._peers[peer]
        if len(self._peers) >= _MAX_PEERS:
            unlocked = [p for p, b in self._peers.items() if b.locked_until <= now]
            for peer in unlocked[: len(self._peers) - _MAX_PEERS + 1]:
                del self._peers[peer]


_REASON_WORDS = {
    "token": "wrong or missing token", "oversized": "oversized", "malformed": "malformed",
    "no_session": "no session", "rate_limited": "rate limited", "version": "protocol version",
    "busy": "robot busy",
}


class _RefusalLog:
    """Logs refusals one by one up to a budget per interval, then one summary per interval, so
    a flood costs a few lines instead of one line per request. While it lasts (an interval
    that needed a summary), the next interval logs only its summary: one line per interval."""

    def __init__(self, interval_s: float, lines: int, now: float | None = None) -> None:
        self.interval_s = interval_s
        self.lines = lines
        self._start = time.monotonic() if now is None else now
        self._used = 0
        self._suppressed: collections.Counter[str] = collections.Counter()
        self._peers: collections.Counter[str] = collections.Counter()

    def note(self, now: float, peer: str, reason: str, text: str) -> None:
        self.tick(now)
        if self._used < self.lines:
            self._used += 1
            logger.warning("refused %s: %s", peer, text)
            return
        self._suppressed[reason] += 1
        if peer in self._peers or len(self._peers) < 100:  # bounded under a many-address flood
            self._peers[peer] += 1
        else:
            self._peers["others"] += 1

    def tick(self, now: float) -> None:
        """Ends the interval when it is over (called by the serve loop, traffic or not)."""
        if now - self._start < self.interval_s:
            return
        total = sum(self._suppressed.values())
        if total:
            kinds = ", ".join(f"{_REASON_WORDS.get(k, k)} {n}"
                              for k, n in self._suppressed.most_common())
            top = ", ".join(f"{p} {n}" for p, n in self._peers.most_common(3))
            logger.warning(
                "refused %d more requests in the last %.0f s (%s) from %d address(es) (%s); "
                "not logged one by one: one summary line per %g s while this lasts",
                total, now - self._start, kinds, len(self._peers), top, self.interval_s,
            )
        self._start = now
        self._used = self.lines if total else 0  # a flood goes on: its summary is enough
        self._suppressed.clear()
        self._peers.clear()


def _peer_address(frame: zmq.Frame) -> str:
    """The IP address a message came from (ZeroMQ's ``Peer-Address`` property), ``"?"`` when
    the transport has none."""
    try:
        return str(frame.get("Peer-Address"))
    except (zmq.ZMQError, UnicodeDecodeError):
        return "?"


class _BindError(OSError):
    """The server's address cannot be bound; ``str()`` is the whole message."""

    def __str__(self) -> str:
        return str(self.strerror)


def _bind_error(host: str, port: int, err: zmq.ZMQError) -> OSError:
    address = f"tcp://{host}:{port}"
    if err.errno == errno.EADDRINUSE:
        return _BindError(err.errno, (
            f"cannot listen on {address}: port {port} is already in use (another "
            f"hardware.server? `ss -ltnp 'sport = :{port}'` shows the process). Stop it, choose "
            "another port (--port N), or use port 0 for any free one"))
    return _BindError(err.errno, (
        f"cannot listen on {address}: {err}. The host must be an address of this machine "
        "(127.0.0.1, 0.0.0.0 for all, or one of its interfaces) and the port in [1, 65535], "
        "or 0 for any free one"))


class RobotServer:
    """Serves one robot to one controlling client at a time.

    Attributes:
        robot: The backend served (wrapped in a :class:`SafeRobot` when ``safety`` is given).
        host: Bound address.
        link_timeout_s: Silence after which the server stops the robot and ends the session.
        link_losses: How many times the server stopped the robot because a client went silent.
        stop_log: ``(time.monotonic(), reason)`` of every stop the server issued by itself.
        auth_limits: The limits on peers without a session (:class:`AuthLimits`).
        refusals: Requests refused since start, by reason (``"token"``, ``"rate_limited"``,
            ``"oversized"``, ``"malformed"``, ``"no_session"``, ``"version"``, ``"busy"``).
            Connections dropped by the socket for an over-size message never reach the server
            and are not counted.
    """

    protocol_version = wire.PROTOCOL_VERSION

    def __init__(
        self,
        robot: Robot,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        *,
        link_timeout_s: float = 1.0,
        safety: SafetyConfig | None = None,
        auth_limits: AuthLimits | None = None,
    ) -> None:
        """Configures the server; nothing is bound until :meth:`start`.

        Args:
            robot: Any :class:`~hardware.robot.Robot` backend.
            host: Address to bind. Anything but loopback needs a ``token``.
            port: TCP port; 0 picks a free one (read it back from :attr:`port`).
            token: Shared secret clients must present; ``None`` accepts any client (loopback
                only).
            link_timeout_s: Stop the robot when the controlling client is silent this long.
            safety: When given, the backend is wrapped in ``SafeRobot(robot, safety)`` here,
                next to the arm, so the limits hold whatever the client does.
            auth_limits: Limits on peers without a session; ``None`` is ``AuthLimits()``.

        Raises:
            ValueError: A non-loopback ``host`` without a token, or a bad argument.
            TypeError: ``token`` or ``auth_limits`` of the wrong type.
        """
        wire.check_token(token, "RobotServer token")
        if auth_limits is not None and not isinstance(auth_limits, AuthLimits):
            raise TypeError(f"RobotServer auth_limits must be an AuthLimits or None, got "
                            f"{type(auth_limits).__name__}")
        if not is_loopback(host) and token is None:
            raise ValueError(
                f"RobotServer refuses to bind {host!r} without a token: anyone who can reach "
                "that address could move the robot. Pass token=... (or --token / "
                f"${TOKEN_ENV}), or bind 127.0.0.1 and tunnel"
            )
        if not (isinstance(port, int) and 0 <= port < 65536):
            raise ValueError(f"RobotServer port must be an int in [0, 65535]. Got {port=}")
        if not (isinstance(link_timeout_s, (int, float)) and 0 < link_timeout_s < float("inf")):
            raise ValueError(f"RobotServer link_timeout_s must be > 0. Got {link_timeout_s=}")
        self.robot: Robot = SafeRobot(robot, safety) if safety is not None else robot
        self.host = host
        self._port = port
        self._token = token
        # Compare digests: equal lengths, so the comparison time says nothing about the token's.
        self._token_digest = hashlib.sha256(token.encode()).digest() if token else None
        self.link_timeout_s = float(link_timeout_s)
        self.link_losses = 0
        self.stop_log: list[tuple[float, str]] = []
        self.auth_limits = auth_limits or AuthLimits()
        self.refusals: collections.Counter[str] = collections.Counter()
        self._limiter = _FailureLimiter(self.auth_limits)
        self._refusal_log = _RefusalLog(self.auth_limits.log_interval_s,
                                        self.auth_limits.log_lines)
        self._socket: zmq.Socket | None = None
        self._session: _Session | None = None
        self._shutdown = threading.Event()
        self._serving = False
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "heartbeat": lambda msg: {},
            "get_observation": self._get_observation,
            "send_action": self._send_action,
            "stop": self._stop,
            "rearm": self._rearm,
            "reset_episode": self._reset_episode,
            "status": self._status,
        }

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with ``port=0``)."""
        return self._port

    @property
    def address(self) -> str:
        """``tcp://host:port``."""
        return f"tcp://{self.host}:{self._port}"

    def start(self) -> str:
        """Binds the socket and connects the robot; returns :attr:`address`.

        Raises:
            OSError: The address cannot be bound (the port is in use, the host is not an
                address of this machine); the message names the address and the fix.
        """
        if self._socket is not None:
            return self.address
        socket = zmq.Context.instance().socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        # Requests are small: a larger message drops its connection as soon as its size header
        # is read, so no peer can make the server read, copy or decode megabytes.
        socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_REQUEST_BYTES)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 0)  # replies to vanished clients are dropped
        try:
            try:
                if self._port == 0:
                    self._port = socket.bind_to_random_port(f"tcp://{self.host}")
                else:
                    socket.bind(self.address)
            except zmq.ZMQError as err:
                raise _bind_error(self.host, self._port, err) from None
            if not self.robot.is_connected:
                self.robot.connect()
        except Exception:
            socket.close()
            raise
        self._socket = socket
        logger.info("robot server for %s listening on %s (protocol %d, token %s)",
                    robot_label(self.robot), self.address, self.protocol_version,
                    "required" if self._token else "not required")
        return self.address

    def serve_forever(self) -> None:
        """Handles requests until :meth:`close` (or SIGINT/SIGTERM on the command line); then
        stops and disconnects the robot."""
        self.start()
        socket = self._socket
        assert socket is not None
        self._serving = True
        try:
            while not self._shutdown.is_set():
                timeout = _POLL_S
                if self._session is not None:
                    left = self._session.last_seen + self.link_timeout_s - time.monotonic()
                    timeout = min(timeout, max(left, 0.0))
                if socket.poll(int(timeout * 1000) + 1, zmq.POLLIN):
                    # copy=False: frames, so a stranger's address can be read off its message.
                    self._handle(socket.recv_multipart(zmq.NOBLOCK, copy=False))
                self._check_link()
                self._refusal_log.tick(time.monotonic())
        finally:
            self._serving = False
            self._end()

    def start_in_thread(self) -> threading.Thread:
        """Binds now (so :attr:`port` is known) and serves from a daemon thread."""
        self.start()
        self._thread = threading.Thread(target=self.serve_forever, name="robot-server", daemon=True)
        self._thread.start()
        return self._thread

    def close(self, timeout_s: float = 5.0) -> None:
        """Asks the loop to end; the loop then stops and disconnects the robot. Waits for the
        thread of :meth:`start_in_thread`; a server started but never served is ended here."""
        self._shutdown.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                logger.error("robot server thread did not end within %.1f s", timeout_s)
        elif not self._serving and self._socket is not None:
            self._end()

    def __enter__(self) -> RobotServer:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ internals
    def _end(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close()
        self._session = None
        try:
            self.robot.stop()
        finally:
            self.robot.disconnect()
        logger.info("robot server on %s closed; robot stopped and disconnected", self.address)

    def _stop_robot(self, reason: str) -> None:
        self.stop_log.append((time.monotonic(), reason))
        try:
            self.robot.stop()
        except Exception:
            logger.exception("%s: stop() failed after %s", robot_label(self.robot), reason)

    def _check_link(self) -> None:
        session = self._session
        if session is None:
            return
        silent = time.monotonic() - session.last_seen
        if silent <= self.link_timeout_s:
            return
        self._session = None
        self.link_losses += 1
        reason = (f"link to client {session.client!r} lost: nothing received for {silent:.3f} s "
                  f"(link_timeout_s={self.link_timeout_s})")
        logger.warning("%s; stopping the robot", reason)
        self._stop_robot(reason)

    def _reply(self, identity: bytes, message: dict[str, Any]) -> None:
        assert self._socket is not None
        try:
            self._socket.send_multipart([identity, wire.pack(message)], zmq.NOBLOCK)
        except zmq.ZMQError as err:  # the client vanished or its queue is full
            logger.warning("could not reply to a client: %s", err)

    def _handle(self, frames: list[zmq.Frame]) -> None:
        session = self._session
        identity = frames[0].bytes
        if session is not None and identity == session.identity:
            self._handle_session(identity, frames)
        else:
            self._handle_stranger(identity, frames)

    def _handle_session(self, identity: bytes, frames: list[zmq.Frame]) -> None:
        """A request on the authenticated client's connection: never rate limited."""
        if len(frames) != 2:
            logger.warning("dropped a message of %d frames (expected 2) from the client",
                           len(frames))
            return
        try:
            msg = wire.unpack(frames[1].buffer, max_bytes=wire.MAX_REQUEST_BYTES)
        except ValueError as err:
            self._refusal_log.note(time.monotonic(), "the client", "malformed",
                                   f"malformed request: {err}")
            self._reply(identity, {"ok": False, "error": "malformed", "message": str(err)})
            return
        op = msg.get("op")
        if op == "hello":
            reply = self._hello(identity, _peer_address(frames[1]), msg)
        else:
            reply = self._dispatch(identity, op, msg)
        reply["id"] = msg.get("id")
        self._reply(identity, reply)

    def _handle_stranger(self, identity: bytes, frames: list[zmq.Frame]) -> None:
        """A request from a connection without a session: only a small ``hello`` can succeed.
        Cheapest checks first: lockout, size, decoding, then the token."""
        now = time.monotonic()
        payload = frames[-1]
        peer = _peer_address(payload)
        size = len(payload.buffer)
        locked_s, scope = self._limiter.locked_for(peer, now)
        if locked_s > 0:
            rid = None
            if size <= wire.MAX_HELLO_BYTES:  # the id lets a real client show the message
                try:
                    rid = wire.unpack(payload.buffer, max_bytes=wire.MAX_HELLO_BYTES).get("id")
                except ValueError:
                    pass
            self._reply(identity, self._rate_limited(peer, locked_s, scope, now, rid))
            return
        if len(frames) != 2:
            reply = self._fail(peer, "malformed", now,
                               f"a message of {len(frames)} frames (expected 2)")
            self._reply(identity, reply)
            return
        if size > wire.MAX_HELLO_BYTES:
            reply = self._fail(peer, "oversized", now,
                               f"a message of {size} bytes without a session (at most "
                               f"{wire.MAX_HELLO_BYTES} before the hello succeeds)")
            self._reply(identity, reply)
            return
        try:
            msg = wire.unpack(payload.buffer, max_bytes=wire.MAX_HELLO_BYTES)
        except ValueError as err:
            reply = self._fail(peer, "malformed", now, f"malformed request: {str(err)[:200]}")
            reply["error"] = "malformed"
            self._reply(identity, reply)
            return
        if msg.get("op") == "hello":
            reply = self._hello(identity, peer, msg)
        else:
            reply = self._fail(peer, "no_session", now,
                               f"{str(msg.get('op'))[:40]!r} without a session")
            reply.update(error="no_session", message=(
                "no such session on the server (it ended after "
                f"{self.link_timeout_s} s of silence, or the server restarted)"))
        reply["id"] = msg.get("id")
        self._reply(identity, reply)

    def _hello(self, identity: bytes, peer: str, msg: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        client = str(msg.get("client", "?"))[: wire.MAX_CLIENT_NAME_CHARS]
        if self._token_digest is not None:  # authenticate first: nothing else before it
            token = msg.get("token")
            digest = hashlib.sha256(token.encode()).digest() if isinstance(token, str) else b""
            if not hmac.compare_digest(digest, self._token_digest):
                what = ("sent no token; this server requires one" if token is None
                        else "sent a wrong token")
                return self._fail(peer, "token", now, f"client {client!r} {what}")
        version = msg.get("version")
        if version != self.protocol_version:
            reason = (f"protocol version mismatch: client {client!r} speaks {version!r}, this "
                      f"server speaks {self.protocol_version}; install the same robolearn "
                      "version on both machines")
            return self._refuse(peer, "version", now, reason)
        self._check_link()  # a silent holder's session ends before a newcomer is judged
        held = self._session
        if held is not None and held.identity != identity:
            return self._refuse(peer, "busy", now, (
                f"robot busy: client {held.client!r} holds it (last heard {now - held.last_seen:.2f}"
                f" s ago; its session ends after {self.link_timeout_s} s of silence)"
            ))
        self._session = _Session(uuid.uuid4().hex, identity, client, now, now)
        logger.info("client %r connected from %s (session %s)", client, peer,
                    self._session.id[:8])
        return {
            "ok": True,
            "version": self.protocol_version,
            "session": self._session.id,
            "robot": robot_label(self.robot),
            "observation_spec": self.robot.observation_spec.to_dict(),
            "action_spec": self.robot.action_spec.to_dict(),
            "link_timeout_s": self.link_timeout_s,
        }

    def _refuse(self, peer: str, reason: str, now: float, text: str) -> dict[str, Any]:
        """A refusal reply (no failure counted); logged within the refusal log's budget."""
        self.refusals[reason] += 1
        self._refusal_log.note(now, peer, reason, text)
        return {"ok": False, "error": "refused", "reason": reason, "message": text}

    def _fail(self, peer: str, reason: str, now: float, text: str) -> dict[str, Any]:
        """A refusal that counts as a failure of ``peer`` (may start a lockout)."""
        reply = self._refuse(peer, reason, now, text)
        lockout, scope = self._limiter.fail(peer, now)
        if lockout:
            who = "all addresses" if scope == "global" else peer
            self._refusal_log.note(now, peer, "rate_limited", (
                f"too many failed attempts: ignoring hellos from {who} for {lockout:g} s "
                "without checking their token"))
        return reply

    def _rate_limited(
        self, peer: str, left_s: float, scope: str, now: float, rid: Any
    ) -> dict[str, Any]:
        if scope == "global":
            text = (f"too many failed attempts on this server from several addresses: it ignores "
                    f"new connections for {left_s:.1f} more s without checking their token")
        else:
            text = (f"too many failed attempts from {peer}: the server ignores this address for "
                    f"{left_s:.1f} more s without checking its token")
        reply = self._refuse(peer, "rate_limited", now, text)
        reply.update(id=rid, retry_after_s=round(left_s, 3))
        return reply

    def _dispatch(self, identity: bytes, op: Any, msg: dict[str, Any]) -> dict[str, Any]:
        session = self._session
        if session is None or session.identity != identity or msg.get("session") != session.id:
            # Only the session's own connection gets here (strangers are handled before): a
            # stale session id after a second hello on the same connection.
            return {"ok": False, "error": "no_session",
                    "message": "no such session on the server (it ended after "
                               f"{self.link_timeout_s} s of silence, or the server restarted)"}
        if op == "bye":
            self._session = None
            logger.info("client %r disconnected", session.client)
            self._stop_robot(f"client {session.client!r} disconnected")
            return {"ok": True}
        handler = self._handlers.get(op) if isinstance(op, str) else None
        try:
            if handler is None:
                close = difflib.get_close_matches(str(op), wire.OPS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                return {"ok": False, "error": "unknown_op",
                        "message": f"unknown op {op!r}{hint} Ops: {', '.join(wire.OPS)}"}
            reply = {"ok": True, **handler(msg)}
        except Exception as err:
            logger.warning("%s: %r failed: %s", robot_label(self.robot), op, err,
                           exc_info=not isinstance(err, (RobotError, ValueError, TypeError)))
            reply = {"ok": False, "error": "backend", "type": type(err).__name__,
                     "message": str(err)}
        # The request proves the client is alive once it has been handled (which may take a
        # while): measure silence from now.
        session.last_seen = time.monotonic()
        return reply

    def _get_observation(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"observation": self.robot.get_observation()}

    def _send_action(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"sent": np.asarray(self.robot.send_action(msg.get("action")))}

    def _stop(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.robot.stop()
        return {}

    def _rearm(self, msg: dict[str, Any]) -> dict[str, Any]:
        rearm = getattr(self.robot, "rearm", None)
        if rearm is None:
            raise TypeError(f"{robot_label(self.robot)} has no watchdog to rearm")
        rearm()
        return {}

    def _reset_episode(self, msg: dict[str, Any]) -> dict[str, Any]:
        reset = getattr(self.robot, "reset_episode", None)
        if reset is None:
            raise TypeError(f"{robot_label(self.robot)} does not support reset_episode()")
        task, seed = msg.get("task"), msg.get("seed")
        if task is not None and not isinstance(task, str):
            raise TypeError(f"reset_episode task must be a string or None, got {task!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"reset_episode seed must be an int or None, got {seed!r}")
        return {"observation": reset(task=task, seed=seed)}

    def _status(self, msg: dict[str, Any]) -> dict[str, Any]:
        status: dict[str, Any] = {
            "robot": robot_label(self.robot),
            "link_losses": self.link_losses,
            "server_stops": len(self.stop_log),
        }
        if isinstance(self.robot, SafeRobot):
            status["interventions"] = self.robot.interventions
            status["tripped"] = self.robot.tripped
        return status


def serve_robot(
    robot: Robot,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    **kwargs: Any,
) -> None:
    """Serves ``robot`` until interrupted (Ctrl-C or SIGTERM); the robot is then stopped and
    disconnected. The one call a vendor makes next to their arm.

    Args:
        robot: The backend, e.g. the vendor's driver class implementing ``Robot``.
        host: Address to bind; non-loopback needs ``token``.
        port: TCP port.
        token: Shared secret clients must present.
        **kwargs: ``link_timeout_s``, ``safety``, ``auth_limits`` (see :class:`RobotServer`).

    Example:
        >>> from hardware import serve_robot                       # doctest: +SKIP
        >>> serve_robot(MyArm("/dev/ttyUSB0"), port=5555, token=os.environ["TOKEN"])  # doctest: +SKIP
    """
    _serve(RobotServer(robot, host, port, token, **kwargs))


def _serve(server: RobotServer) -> None:
    """:func:`serve_robot` for a constructed server (started already or not)."""
    previous = signal.getsignal(signal.SIGTERM) if _main_thread() else None
    if _main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: server._shutdown.set())
    try:
        address = server.start()
        print(f"hardware.server listening on {address}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        server._shutdown.set()
        if server._socket is not None:
            server._end()
    finally:
        if _main_thread() and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class _UsageError(ValueError):
    """A bad command-line flag (exit code 2)."""


def _make_twin(args: argparse.Namespace) -> Robot:
    from hardware.twin import TwinRobot
    from sim import TaskParams, resolve_task

    try:
        task = resolve_task(args.task)
    except (TypeError, ValueError) as err:
        raise _UsageError(f"--task: {err}") from None
    params = None
    if args.params:
        example = """e.g. --params '{"friction_scale": 0.8, "action_latency": 2}'"""
        try:
            params = TaskParams.from_json(args.params)
        except json.JSONDecodeError as err:
            raise _UsageError(
                f"--params is not valid JSON ({err.msg} at character {err.pos} of "
                f"{args.params!r}); pass a JSON object of TaskParams fields, {example}"
            ) from None
        except (TypeError, ValueError) as err:
            raise _UsageError(f"--params {args.params!r}: {err}; {example}") from None
    return TwinRobot(task, params=params, seed=args.seed, realtime=args.realtime)


BACKENDS: dict[str, Callable[[argparse.Namespace], Robot]] = {"twin": _make_twin}
"""Backends the command line can build, by name."""

_PROG = "python -m hardware.server"


def _die(message: str, code: int) -> None:
    print(f"{_PROG}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """``python -m hardware.server``: serve a backend next to the arm.

    A bad flag (unknown backend or task, bad ``--params``, a public bind without a token) prints
    one paragraph naming it and the fix, and exits 2; a port in use or a backend that fails to
    connect exits 1. No tracebacks for these (``--log-level DEBUG`` logs the backend's).
    """
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Serve a robot backend over the network (ZeroMQ, msgpack, token auth).",
    )
    parser.add_argument("--backend", default="twin", help=f"one of {', '.join(BACKENDS)}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (0: any free)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"shared secret (default ${TOKEN_ENV})")
    parser.add_argument("--link-timeout", type=float, default=1.0,
                        help="stop the robot after this many seconds without a client message")
    parser.add_argument("--no-safety", action="store_true",
                        help="do not wrap the backend in SafeRobot on the server side")
    parser.add_argument("--watchdog-timeout", type=float, default=None,
                        help="server-side command watchdog, seconds (default: off; the link "
                             "timeout still applies)")
    twin = parser.add_argument_group("twin backend")
    twin.add_argument("--task", default="reach-v3", help="Meta-World task")
    twin.add_argument("--seed", type=int, default=0)
    twin.add_argument("--params", default=None, help="TaskParams as JSON (the reality gap)")
    twin.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                      help="step at the control rate (default) or as fast as possible")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    level = logging.getLevelName(args.log_level.upper())
    if not isinstance(level, int):
        _die(f"--log-level {args.log_level!r} is not a logging level; use DEBUG, INFO, WARNING "
             "or ERROR", 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.backend not in BACKENDS:
        close = difflib.get_close_matches(args.backend, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        _die(f"--backend: unknown backend {args.backend!r}{hint} Available: "
             f"{', '.join(BACKENDS)}", 2)
    try:
        robot = BACKENDS[args.backend](args)
        safety = None
        if not args.no_safety:
            safety = (SafetyConfig.for_metaworld if args.backend == "twin" else SafetyConfig)(
                watchdog_timeout_s=args.watchdog_timeout
            )
        server = RobotServer(robot, args.host, args.port, args.token,
                             link_timeout_s=args.link_timeout, safety=safety)
    except (TypeError, ValueError) as err:  # the flags: _UsageError, or the server's checks
        _die(str(err), 2)
    try:
        server.start()  # bind, then connect the backend
    except _BindError as err:  # the message names the address and the fix
        _die(str(err), 1)
    except Exception as err:  # the backend's connect(): its own words, without a traceback
        logger.debug("backend connect failed", exc_info=True)
        _die(f"the {args.backend} backend {robot_label(robot)} failed to connect: "
             f"{type(err).__name__}: {err}. Fix the backend's flags or hardware and retry "
             "(--log-level DEBUG shows the traceback)", 1)
    _serve(server)


if __name__ == "__main__":
    main()
