"""``RemoteRobot``: the :class:`~hardware.robot.Robot` interface over the network to a
:class:`~hardware.server.RobotServer`.

Depends only on numpy, msgpack and pyzmq (no MuJoCo, no torch): it runs anywhere the policy
runs. Every request waits at most ``timeout_s`` for its reply; a request that gets none marks
the link dead and raises :class:`~hardware.errors.RobotLinkError`, naming what timed out and
the address. Every later call raises it at once, until ``disconnect()`` and ``connect()``. A
background thread sends a heartbeat when the client is idle, so the server keeps the session
(and does not stop the robot) while the client process is alive; it also notices a dead server
between calls.

A server that answers but will not serve this client (a wrong or missing token, another
protocol version, the robot held by another client, too many failed attempts from this
address) raises :class:`~hardware.errors.RobotRefusedError` from ``connect()``, with the reason
(:attr:`~hardware.errors.RobotRefusedError.reason`) and the fix in its message; calls after a
refused ``connect()`` raise it again (not a "call connect() first"). A refusal is not a dead
link: :class:`~hardware.errors.RobotLinkError` means no answer at all.

Errors the backend raised on the server come back as the same class when it is one of the
hardware errors (e.g. :class:`~hardware.errors.WatchdogTrippedError`) or ``ValueError`` /
``TypeError``, otherwise as :class:`~hardware.errors.RemoteRobotError`.

Example:
    >>> from hardware import RemoteRobot                       # doctest: +SKIP
    >>> with RemoteRobot("127.0.0.1", 5555, token="secret", timeout_s=0.5) as robot:  # doctest: +SKIP
    ...     obs = robot.get_observation()
    ...     robot.send_action(policy.act(obs["state"]))
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from typing import Any

import numpy as np
import zmq

from hardware import errors, wire
from hardware.errors import RobotLinkError, RobotNotConnectedError, RobotRefusedError
from hardware.robot import Robot, Spec, require_connected, robot_label

logger = logging.getLogger(__name__)

_TOKEN_FIX = (f"give this client the token the server was started with (the server's --token, "
              f"or ${wire.TOKEN_ENV} on the server machine): RemoteRobot(..., token=...), or "
              f"set {wire.TOKEN_ENV} for tools that read it (robolearn deploy does)")

_REMOTE_ERRORS: dict[str, type[Exception]] = {
    "WatchdogTrippedError": errors.WatchdogTrippedError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}


class _SpecNotReadyError(RobotNotConnectedError, AttributeError):
    """The specs come from the server: not an attribute until ``connect()``. Being an
    AttributeError keeps ``hasattr`` and ``isinstance(robot, Robot)`` working (Python 3.11 looks
    the protocol members up with ``hasattr``)."""


class RemoteRobot(Robot):
    """A robot served by a :class:`~hardware.server.RobotServer`.

    The specs come from the server at ``connect()``.

    Attributes:
        address: ``tcp://host:port`` of the server.
        timeout_s: Longest wait for a reply to a control request.
        name: Used in messages.
    """

    protocol_version = wire.PROTOCOL_VERSION

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5555,
        token: str | None = None,
        *,
        timeout_s: float = 1.0,
        connect_timeout_s: float = 5.0,
        reset_timeout_s: float = 30.0,
        name: str | None = None,
    ) -> None:
        """Configures the client; nothing is sent until ``connect()``.

        Args:
            host: Server address.
            port: Server port.
            token: The server's shared secret (``None`` when it requires none); at most
                :data:`~hardware.wire.MAX_TOKEN_BYTES` UTF-8 bytes.
            timeout_s: Longest wait for the reply to ``get_observation``, ``send_action``,
                ``stop`` and heartbeats.
            connect_timeout_s: Longest wait for the handshake (the server may be starting).
            reset_timeout_s: Longest wait for ``reset_episode`` (it may rebuild a simulation).
            name: Name for messages; defaults to the address.

        Raises:
            ValueError: A timeout that is not a positive number, or an empty or over-long token.
            TypeError: A token that is not a string.
        """
        wire.check_token(token, "RemoteRobot token")
        for field, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s),
                             ("reset_timeout_s", reset_timeout_s)):
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValueError(f"RemoteRobot {field} must be a number of seconds > 0. Got "
                                 f"{field}={value!r}")
        self.address = f"tcp://{host}:{port}"
        self.timeout_s = float(timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.reset_timeout_s = float(reset_timeout_s)
        self.name = name or self.address
        self._token = token
        self._client = f"{socket.gethostname()}:{os.getpid()}"[-wire.MAX_CLIENT_NAME_CHARS:]
        self._socket: zmq.Socket | None = None
        self._lock = threading.Lock()  # one request in flight on the socket at a time
        self._session: str | None = None
        self._specs: tuple[Spec, Spec] | None = None
        self._next_id = 0
        self._dead: RobotLinkError | None = None
        self._dead_sentence = ""
        self._refused: RobotRefusedError | None = None  # why the last connect() failed
        self._last_request = 0.0
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_stop = threading.Event()
        self.remote_robot: str | None = None
        self.link_timeout_s: float | None = None

    # ------------------------------------------------------------------------------ state
    @property
    def is_connected(self) -> bool:
        return self._session is not None

    @property
    def link_alive(self) -> bool:
        """Whether connected and no request has timed out."""
        return self._session is not None and self._dead is None

    @property
    def observation_spec(self) -> Spec:  # type: ignore[override]
        if self._specs is None:
            raise _SpecNotReadyError(robot_label(self), "observation_spec", attribute=True)
        return self._specs[0]

    @property
    def action_spec(self) -> Spec:  # type: ignore[override]
        if self._specs is None:
            raise _SpecNotReadyError(robot_label(self), "action_spec", attribute=True)
        return self._specs[1]

    # ------------------------------------------------------------------------------ Robot API
    def connect(self) -> None:
        """Opens the socket and shakes hands (protocol version, token).

        Raises:
            RobotRefusedError: The server answered and refused (a wrong or missing token,
                another protocol version, the robot held by another client, too many failed
                attempts from this address); ``reason`` says which, the message the fix.
            RobotLinkError: No answer within ``connect_timeout_s`` (no server there, or a
                network problem); not a refusal.
        """
        if self._session is not None:
            return
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a live connection: sends to a dead
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)  # server time out, not pile up
        sock.connect(self.address)
        self._socket = sock
        self._dead = None
        try:
            reply = self._request(
                "hello", self.connect_timeout_s, version=self.protocol_version,
                token=self._token, client=self._client,
            )
            if reply.get("version") != self.protocol_version:
                raise RobotRefusedError(
                    f"{self.address} speaks robot protocol {reply.get('version')!r}, this client "
                    f"{self.protocol_version}; install the same robolearn version on both machines",
                    address=self.address, reason="version",
                )
            self._specs = (Spec.from_dict(reply["observation_spec"]),
                           Spec.from_dict(reply["action_spec"]))
            self.link_timeout_s = float(reply["link_timeout_s"])
            self.remote_robot = str(reply.get("robot"))
        except RobotRefusedError as err:
            self._refused = err
            self._close_socket()
            raise
        except BaseException:
            self._close_socket()
            raise
        self._refused = None
        self._session = str(reply["session"])
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(
            target=self._heartbeats, name=f"heartbeat[{self.address}]", daemon=True
        )
        self._heartbeat.start()
        logger.info("connected to %s at %s", self.remote_robot, self.address)

    def get_observation(self) -> dict[str, np.ndarray]:
        self._require_connected("get_observation")
        return self._request("get_observation")["observation"]

    def send_action(self, action: Any) -> np.ndarray:
        """Sends one command; returns what the server's backend actually sent.

        Raises:
            TypeError: ``action`` is not numeric (nothing is sent).
            RobotLinkError: No reply within ``timeout_s``.
        """
        self._require_connected("send_action")
        arr = np.asarray(action)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{robot_label(self)}.send_action needs a numeric array, got dtype "
                            f"{arr.dtype}")
        return np.asarray(self._request("send_action", action=arr)["sent"])

    def stop(self) -> None:
        """Asks the server to stop the robot. No-op when not connected.

        Raises:
            RobotLinkError: The link is dead; the server then stops the robot by itself within
                its ``link_timeout_s``.
        """
        if self._session is None:
            return
        self._request("stop")

    def rearm(self) -> None:
        """Re-arms the server-side watchdog (when the server wraps its robot in SafeRobot)."""
        self._require_connected("rearm")
        self._request("rearm")

    def reset_episode(self, task: str | None = None, seed: int | None = None) -> dict[str, np.ndarray]:
        """Starts a new episode on a backend that has episodes (the twin)."""
        self._require_connected("reset_episode")
        return self._request("reset_episode", self.reset_timeout_s, task=task,
                             seed=seed)["observation"]

    def status(self) -> dict[str, Any]:
        """The server's view: link losses, its own stops, safety interventions if any."""
        self._require_connected("status")
        reply = self._request("status")
        return {k: v for k, v in reply.items() if k not in ("ok", "id")}

    def disconnect(self) -> None:
        """Says goodbye (the server stops the robot) and closes the socket. No-op when not
        connected; never raises for a dead link."""
        if self._session is None:
            return
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self._dead is None:
            try:
                self._request("bye", min(self.timeout_s, 1.0))
            except errors.RobotError as err:
                logger.warning("%s: goodbye not acknowledged (%s); the server stops the robot "
                               "after its link timeout", robot_label(self), err)
        self._session = None
        self._specs = None
        self._close_socket()
        logger.info("disconnected from %s", self.address)

    # ------------------------------------------------------------------------------ internals
    def _require_connected(self, method: str) -> None:
        if self._session is None and self._refused is not None:
            refused = self._refused
            raise RobotRefusedError(
                f"{robot_label(self)}.{method}() called, but the last connect() was refused: "
                f"{refused}", address=self.address, reason=refused.reason,
                retry_after_s=refused.retry_after_s,
            )
        require_connected(self, method)

    def _refusal(self, reply: dict[str, Any]) -> RobotRefusedError:
        """The error for a refusal reply: what the server said, and the fix."""
        message = str(reply.get("message", ""))
        reason = reply.get("reason")
        if not isinstance(reason, str):  # a server from before refusals carried a reason
            reason = next((r for r, word in (("token", "token"), ("version", "protocol version"),
                                             ("busy", "busy")) if word in message), "refused")
        retry = reply.get("retry_after_s")
        retry_s = float(retry) if isinstance(retry, (int, float)) else None
        if reason == "token":
            what = ("the server requires a token and this client sent none" if self._token is None
                    else "the server does not accept this client's token")
            fix = _TOKEN_FIX
        elif reason == "rate_limited":
            what = message
            wait = f"retry after {math.ceil(retry_s)} s" if retry_s is not None else "retry later"
            fix = (f"{wait} (earlier attempts from this address failed: if the token was wrong, "
                   f"first {_TOKEN_FIX})")
        elif reason == "busy":
            what = message
            fix = "stop the other client (or wait for it to disconnect), then connect() again"
        elif reason == "version":
            what, fix = message, ""  # the server's message says to install the same version
        else:
            what, fix = message, "run the same robolearn version on both machines"
        text = f"{self.address} refused the connection ({reason}): {what}"
        if fix:
            text += f". Fix: {fix}"
        return RobotRefusedError(text, address=self.address, reason=reason, retry_after_s=retry_s)

    def _close_socket(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close(linger=0)

    def _link_error(self, what: str, timeout_s: float | None, sentence: str) -> RobotLinkError:
        """Marks the link dead; ``sentence`` says what happened, naming the address."""
        err = RobotLinkError(
            f"{robot_label(self)}: {sentence}. The server stops the robot by itself when the "
            "link stays silent; check the server, then disconnect() and connect() again",
            address=self.address, what=what, timeout_s=timeout_s,
        )
        self._dead = err
        self._dead_sentence = sentence
        return err

    def _request(self, op: str, timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._dead is not None:
                raise RobotLinkError(
                    f"{robot_label(self)}: cannot {op}, the link is down ({self._dead_sentence}); "
                    "disconnect() and connect() again",
                    address=self.address, what=self._dead.what, timeout_s=self._dead.timeout_s,
                )
            sock = self._socket
            if sock is None:
                raise RobotNotConnectedError(robot_label(self), op)
            self._next_id += 1
            rid = self._next_id
            deadline = time.monotonic() + timeout
            payload = wire.pack({"op": op, "id": rid, "session": self._session, **fields})
            sock.setsockopt(zmq.SNDTIMEO, max(1, int(timeout * 1000)))
            try:
                sock.send(payload)
            except zmq.Again:
                raise self._link_error(
                    f"sending {op!r}", timeout,
                    f"could not send {op!r} to {self.address} within {timeout:.3g} s (no "
                    "connection to the server)",
                ) from None
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sock.poll(max(1, math.ceil(left * 1000)), zmq.POLLIN):
                    raise self._link_error(
                        f"reply to {op!r}", timeout,
                        f"no reply to {op!r} from {self.address} within {timeout:.3g} s (server "
                        "down, hung or link cut)",
                    )
                try:
                    reply = wire.unpack(sock.recv(zmq.NOBLOCK))
                except (zmq.Again, ValueError) as err:
                    logger.warning("%s: dropped an unreadable reply: %s", robot_label(self), err)
                    continue
                if reply.get("id") == rid:
                    break
                # A late reply to an earlier request is impossible after a timeout (the link is
                # then dead), but tolerate strays rather than mismatch replies.
            self._last_request = time.monotonic()
        return self._check(op, reply)

    def _check(self, op: str, reply: dict[str, Any]) -> dict[str, Any]:
        if reply.get("ok") is True:
            return reply
        kind, message = reply.get("error"), str(reply.get("message", ""))
        if kind == "refused":
            raise self._refusal(reply)
        if kind == "no_session":
            raise self._link_error(f"session for {op!r}", None,
                                   f"{self.address} rejected the session: {message}")
        if kind == "backend":
            remote_type = str(reply.get("type", "Exception"))
            cls = _REMOTE_ERRORS.get(remote_type)
            text = f"{self.remote_robot or self.address}.{op}: {message}"
            if cls is not None:
                raise cls(text)
            raise errors.RemoteRobotError(f"{remote_type}: {text}", remote_type=remote_type)
        raise errors.RemoteRobotError(f"{self.address} answered {op!r} with {kind}: {message}",
                                      remote_type=str(kind))

    def _heartbeats(self) -> None:
        assert self.link_timeout_s is not None
        interval = self.link_timeout_s / 4
        while not self._heartbeat_stop.wait(interval):
            if self._dead is not None:
                return
            if time.monotonic() - self._last_request < interval:
                continue  # real traffic keeps the link alive
            try:
                self._request("heartbeat", min(self.timeout_s, self.link_timeout_s))
            except RobotLinkError as err:
                if err is self._dead:  # this heartbeat found the link dead; else a call did
                    logger.warning("%s", err)
                return
            except errors.RobotError as err:
                logger.warning("%s: heartbeat refused: %s", robot_label(self), err)
