"""``RobotServer``: serves any :class:`~hardware.robot.Robot` backend over ZeroMQ, next to the arm.

One client (the controller) holds the robot at a time. The server

- binds ``127.0.0.1`` by default and refuses to bind any other address without a token;
- refuses a client whose protocol version differs or whose token is wrong (and logs why);
- stops the robot by itself when the controlling client goes silent for ``link_timeout_s``
  (no request, not even a heartbeat): the client crashed, hung or the network dropped;
- stops the robot when the client says goodbye, and stops and disconnects it at shutdown;
- never unpickles anything (see :mod:`hardware.wire`).

It handles one request at a time, in one thread: backends need not be thread-safe.

The token is a shared secret compared in constant time; it is not encryption. Outside a lab
network, reach the server through an SSH tunnel or a VPN.

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
import difflib
import hmac
import ipaddress
import logging
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
TOKEN_ENV = "ROBOLEARN_ROBOT_TOKEN"
"""Environment variable the command line reads the token from (keeps it out of ``ps``)."""
_POLL_S = 0.05  # how often the loop looks at the shutdown flag when idle


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


class RobotServer:
    """Serves one robot to one controlling client at a time.

    Attributes:
        robot: The backend served (wrapped in a :class:`SafeRobot` when ``safety`` is given).
        host: Bound address.
        link_timeout_s: Silence after which the server stops the robot and ends the session.
        link_losses: How many times the server stopped the robot because a client went silent.
        stop_log: ``(time.monotonic(), reason)`` of every stop the server issued by itself.
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

        Raises:
            ValueError: A non-loopback ``host`` without a token, or a bad argument.
        """
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("RobotServer token must be a non-empty string or None")
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
        self.link_timeout_s = float(link_timeout_s)
        self.link_losses = 0
        self.stop_log: list[tuple[float, str]] = []
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
        """Binds the socket and connects the robot; returns :attr:`address`."""
        if self._socket is not None:
            return self.address
        socket = zmq.Context.instance().socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 0)  # replies to vanished clients are dropped
        try:
            if self._port == 0:
                self._port = socket.bind_to_random_port(f"tcp://{self.host}")
            else:
                socket.bind(self.address)
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
                    self._handle(socket.recv_multipart(zmq.NOBLOCK))
                self._check_link()
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

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            logger.warning("dropped a message of %d frames (expected 2)", len(frames))
            return
        identity, payload = frames
        try:
            msg = wire.unpack(payload)
        except ValueError as err:
            logger.warning("malformed request: %s", err)
            self._reply(identity, {"ok": False, "error": "malformed", "message": str(err)})
            return
        rid = msg.get("id")
        op = msg.get("op")
        if op == "hello":
            reply = self._hello(identity, msg)
        else:
            reply = self._dispatch(identity, op, msg)
        reply["id"] = rid
        self._reply(identity, reply)

    def _hello(self, identity: bytes, msg: dict[str, Any]) -> dict[str, Any]:
        client = str(msg.get("client", "?"))[:200]
        version = msg.get("version")
        if version != self.protocol_version:
            reason = (f"protocol version mismatch: client {client!r} speaks {version!r}, this "
                      f"server speaks {self.protocol_version}; install the same robolearn "
                      "version on both machines")
            return self._refuse(reason)
        token = msg.get("token")
        if self._token is not None and not (
            isinstance(token, str) and hmac.compare_digest(token.encode(), self._token.encode())
        ):
            return self._refuse(f"wrong or missing token from client {client!r}")
        self._check_link()  # a silent holder's session ends before a newcomer is judged
        now = time.monotonic()
        held = self._session
        if held is not None and held.identity != identity:
            return self._refuse(
                f"robot busy: client {held.client!r} holds it (last heard {now - held.last_seen:.2f}"
                f" s ago; its session ends after {self.link_timeout_s} s of silence)"
            )
        self._session = _Session(uuid.uuid4().hex, identity, client, now, now)
        logger.info("client %r connected (session %s)", client, self._session.id[:8])
        return {
            "ok": True,
            "version": self.protocol_version,
            "session": self._session.id,
            "robot": robot_label(self.robot),
            "observation_spec": self.robot.observation_spec.to_dict(),
            "action_spec": self.robot.action_spec.to_dict(),
            "link_timeout_s": self.link_timeout_s,
        }

    def _refuse(self, reason: str) -> dict[str, Any]:
        logger.warning("refused a connection: %s", reason)
        return {"ok": False, "error": "refused", "message": reason}

    def _dispatch(self, identity: bytes, op: Any, msg: dict[str, Any]) -> dict[str, Any]:
        session = self._session
        if session is None or session.identity != identity or msg.get("session") != session.id:
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
        **kwargs: ``link_timeout_s``, ``safety`` (see :class:`RobotServer`).

    Example:
        >>> from hardware import serve_robot                       # doctest: +SKIP
        >>> serve_robot(MyArm("/dev/ttyUSB0"), port=5555, token=os.environ["TOKEN"])  # doctest: +SKIP
    """
    server = RobotServer(robot, host, port, token, **kwargs)
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


def _make_twin(args: argparse.Namespace) -> Robot:
    from hardware.twin import TwinRobot
    from sim import TaskParams

    params = TaskParams.from_json(args.params) if args.params else None
    return TwinRobot(args.task, params=params, seed=args.seed, realtime=args.realtime)


BACKENDS: dict[str, Callable[[argparse.Namespace], Robot]] = {"twin": _make_twin}
"""Backends the command line can build, by name."""


def main(argv: list[str] | None = None) -> None:
    """``python -m hardware.server``: serve a backend next to the arm."""
    parser = argparse.ArgumentParser(
        prog="python -m hardware.server",
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
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.backend not in BACKENDS:
        close = difflib.get_close_matches(args.backend, BACKENDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        parser.error(f"unknown backend {args.backend!r}{hint} Available: {', '.join(BACKENDS)}")
    robot = BACKENDS[args.backend](args)
    safety = None
    if not args.no_safety:
        safety = (SafetyConfig.for_metaworld if args.backend == "twin" else SafetyConfig)(
            watchdog_timeout_s=args.watchdog_timeout
        )
    try:
        serve_robot(robot, args.host, args.port, args.token,
                    link_timeout_s=args.link_timeout, safety=safety)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
