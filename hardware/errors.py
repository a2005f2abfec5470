"""Errors raised by robots, the safety layer and the network link.

Every error names the robot (or the address) involved and says how to recover.
"""

from __future__ import annotations


class RobotError(RuntimeError):
    """Base class of the hardware errors."""


class RobotNotConnectedError(RobotError):
    """A robot method that needs a connection was called before ``connect()``."""

    def __init__(self, robot: str, method: str, *, attribute: bool = False) -> None:
        what = f"{robot}.{method} is not available" if attribute else f"{robot}.{method}() called"
        super().__init__(
            f"{what} before connect(); call robot.connect() first "
            "or use the robot as a context manager: `with robot: ...`"
        )
        self.robot = robot
        self.method = method


class RobotLinkError(RobotError):
    """The network link to a remote robot is dead: a request got no reply in time.

    Attributes:
        address: The server address, e.g. ``"tcp://127.0.0.1:5555"``.
        what: What timed out or failed, e.g. ``"reply to 'send_action'"``.
        timeout_s: The time waited, in seconds (``None`` when not a timeout).
    """

    def __init__(self, message: str, *, address: str, what: str, timeout_s: float | None) -> None:
        super().__init__(message)
        self.address = address
        self.what = what
        self.timeout_s = timeout_s


class RobotRefusedError(RobotError):
    """The robot server answered and refused this client: a wrong or missing token, another
    protocol version, the robot held by another client, or too many failed attempts from this
    address. Unlike :class:`RobotLinkError` the link works; retrying unchanged does not help
    (except for ``"busy"`` and ``"rate_limited"``, after a while). The message says the fix.

    Attributes:
        address: The server address, e.g. ``"tcp://127.0.0.1:5555"`` (``None`` when unknown).
        reason: ``"token"``, ``"version"``, ``"busy"``, ``"rate_limited"``, ``"oversized"``,
            ``"malformed"`` or ``"refused"`` (a server that gave no reason).
        retry_after_s: For ``"rate_limited"``: seconds until the server checks this address's
            token again (``None`` otherwise).
    """

    def __init__(
        self,
        message: str,
        *,
        address: str | None = None,
        reason: str = "refused",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.address = address
        self.reason = reason
        self.retry_after_s = retry_after_s


class WatchdogTrippedError(RobotError):
    """The safety watchdog stopped the robot; commands are refused until ``rearm()``."""


class RemoteRobotError(RobotError):
    """The backend behind a robot server raised an error while handling a request.

    Attributes:
        remote_type: The exception class name on the server, e.g. ``"RuntimeError"``.
    """

    def __init__(self, message: str, *, remote_type: str) -> None:
        super().__init__(message)
        self.remote_type = remote_type
