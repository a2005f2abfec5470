"""The robot link's handshake: refusals a person can act on, size limits before decoding, and
rate-limited failures with bounded logging (the parts that need no flood)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from hardware import (
    RemoteRobot,
    RobotLinkError,
    RobotNotConnectedError,
    RobotRefusedError,
    RobotServer,
    SafeRobot,
    SafetyConfig,
    TwinRobot,
    wire,
)
from hardware.server import AuthLimits, _FailureLimiter, _RefusalLog
from tests.hardware.conftest import TOKEN, wait_for

pytestmark = pytest.mark.timeout(60)


def client(server: RobotServer, **kwargs) -> RemoteRobot:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("timeout_s", 2.0)
    return RemoteRobot("127.0.0.1", server.port, **kwargs)


def raw_dealer(server: RobotServer) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    return sock


def hello(token, rid: int = 1) -> bytes:
    return wire.pack({"op": "hello", "id": rid, "version": wire.PROTOCOL_VERSION,
                      "token": token, "client": "test"})


def request(sock: zmq.Socket, payload: bytes) -> dict:
    sock.send(payload)
    assert sock.poll(5000), "no reply"
    return wire.unpack(sock.recv())


# ---------------------------------------------------------------------- refusals on the client
@pytest.mark.parametrize(("token", "says"), [(None, "sent none"), ("wrong", "does not accept")])
def test_token_refusal_is_a_refusal_with_the_fix(served_twin, token, says):
    server, _ = served_twin
    robot = client(server, token=token)
    with pytest.raises(RobotRefusedError) as err:
        robot.connect()
    assert not isinstance(err.value, RobotLinkError)  # the link works; the server said no
    assert err.value.reason == "token" and err.value.address == server.address
    message = str(err.value)
    assert "refused" in message and says in message
    assert wire.TOKEN_ENV in message and "token the server was started with" in message
    assert not robot.is_connected


@pytest.mark.parametrize("token", [None, "wrong"])
@pytest.mark.parametrize("call", ["get_observation", "send_action", "status", "reset_episode"])
def test_calls_after_a_refused_connect_repeat_the_refusal(served_twin, token, call):
    server, _ = served_twin
    robot = client(server, token=token)
    with pytest.raises(RobotRefusedError):
        robot.connect()
    args = (np.zeros(4, np.float32),) if call == "send_action" else ()
    with pytest.raises(RobotRefusedError, match=f"{call}.*last connect.. was refused") as err:
        getattr(robot, call)(*args)
    assert err.value.reason == "token" and wire.TOKEN_ENV in str(err.value)
    robot.stop()  # still always safe
    robot.disconnect()


def test_a_client_never_connected_still_says_connect_first():
    with pytest.raises(RobotNotConnectedError, match="connect"):
        RemoteRobot(port=1).get_observation()


def test_refusal_through_the_safety_layer(served_twin):
    server, _ = served_twin
    with pytest.raises(RobotRefusedError, match="token"):
        SafeRobot(client(server, token="wrong"), SafetyConfig.for_metaworld()).connect()


@pytest.mark.parametrize(
    ("token", "error"),
    [("", ValueError), ("x" * (wire.MAX_TOKEN_BYTES + 1), ValueError), (b"secret", TypeError)],
)
def test_bad_tokens_are_refused_at_construction(token, error):
    with pytest.raises(error, match="token"):
        RemoteRobot(token=token)
    with pytest.raises(error, match="token"):
        RobotServer(TwinRobot("reach-v3"), port=0, token=token)


def test_a_hello_with_the_longest_token_fits_the_hello_limit():
    name = "h" * wire.MAX_CLIENT_NAME_CHARS
    assert len(wire.pack({"op": "hello", "id": 2**40, "session": None, "client": name,
                          "version": wire.PROTOCOL_VERSION,
                          "token": "\u20ac" * (wire.MAX_TOKEN_BYTES // 3)})) <= wire.MAX_HELLO_BYTES


# ---------------------------------------------------------------------- sizes
def test_unpack_refuses_oversized_messages_before_decoding():
    with pytest.raises(ValueError, match="exceeds the limit of 10 bytes"):
        wire.unpack(b"\x00" * 11, max_bytes=10)


def test_a_message_over_the_request_limit_drops_the_connection(served_twin):
    server, _ = served_twin
    sock = raw_dealer(server)
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    try:
        sock.send(b"\x00" * (wire.MAX_REQUEST_BYTES + 1))
        assert monitor.poll(5000), "the server kept the connection"
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED
        assert not sock.poll(100)  # and never answered
    finally:
        sock.disable_monitor()
        monitor.close()
        sock.close()
    with client(server) as robot:  # the server is fine
        robot.get_observation()


def test_a_stranger_may_send_only_a_small_hello(served_twin):
    server, _ = served_twin
    sock = raw_dealer(server)
    try:
        reply = request(sock, b"\x00" * (wire.MAX_HELLO_BYTES + 1))
        assert reply["ok"] is False and reply["reason"] == "oversized"
        assert server.refusals["oversized"] == 1
    finally:
        sock.close()


def test_the_client_may_send_requests_up_to_the_request_limit(served_twin):
    server, _ = served_twin
    with client(server) as robot:
        with pytest.raises(ValueError):  # the backend's answer, not a dropped link
            robot.send_action(np.zeros(wire.MAX_REQUEST_BYTES // 8 - 64))
        robot.get_observation()


# ---------------------------------------------------------------------- rate limits
def test_authentication_comes_first(served_twin):
    """A wrong token with another version is a token refusal: nothing is told before the token
    is checked."""
    server, _ = served_twin
    sock = raw_dealer(server)
    try:
        reply = request(sock, wire.pack({"op": "hello", "id": 1, "version": 999, "token": "x"}))
        assert reply["reason"] == "token" and "999" not in reply["message"]
    finally:
        sock.close()


def test_a_locked_out_address_gets_no_token_check_then_recovers():
    limits = AuthLimits(peer_burst=2, backoff_s=0.3, max_backoff_s=0.3)
    with RobotServer(TwinRobot("reach-v3"), port=0, token=TOKEN, link_timeout_s=2.0,
                     auth_limits=limits) as server:
        for _ in range(limits.peer_burst + 1):
            with pytest.raises(RobotRefusedError, match="token"):
                client(server, token="wrong").connect()
        with pytest.raises(RobotRefusedError, match="retry after") as err:  # the right token
            client(server).connect()
        assert err.value.reason == "rate_limited" and 0 < err.value.retry_after_s <= 0.3
        assert server.refusals["token"] == limits.peer_burst + 1
        robot = client(server)
        wait_for(lambda: _connects(robot), timeout_s=5.0, interval_s=0.05)
        robot.get_observation()
        robot.disconnect()


def _connects(robot: RemoteRobot) -> bool:
    try:
        robot.connect()
    except RobotRefusedError as err:
        assert err.reason == "rate_limited"
        return False
    return True


def test_the_connected_client_is_never_rate_limited(served_twin):
    server, _ = served_twin
    with client(server) as robot:
        for _ in range(3 * server.auth_limits.peer_burst):  # same address, locked out
            with pytest.raises(RobotRefusedError):
                client(server, token="wrong").connect()
        assert server.refusals["rate_limited"] > 0
        for _ in range(20):
            robot.send_action(np.zeros(4, np.float32))
        assert server.link_losses == 0


def test_peer_buckets_lock_out_with_doubling_backoff():
    limits = AuthLimits(peer_burst=3, peer_rate=1.0, backoff_s=1.0, max_backoff_s=4.0)
    limiter = _FailureLimiter(limits, now=0.0)
    assert [limiter.fail("a", 0.0) for _ in range(3)] == [(0.0, "")] * 3
    assert limiter.fail("a", 0.0) == (1.0, "peer")
    assert limiter.locked_for("a", 0.5) == (0.5, "peer")
    assert limiter.locked_for("b", 0.5) == (0.0, "")  # other addresses are not affected
    assert limiter.fail("a", 1.0) == (2.0, "peer")  # no refill while locked: doubled at once
    assert limiter.fail("a", 3.0) == (4.0, "peer")
    assert limiter.fail("a", 7.0) == (4.0, "peer")  # capped at max_backoff_s
    # A full refill (burst / rate seconds after the lockout ends) forgives the lockouts.
    assert limiter.locked_for("a", 11.0 + 3.0) == (0.0, "")
    assert [limiter.fail("a", 14.0) for _ in range(3)] == [(0.0, "")] * 3
    assert limiter.fail("a", 14.0) == (1.0, "peer")


def test_the_global_bucket_bounds_guesses_from_many_addresses():
    limits = AuthLimits(peer_burst=5, global_burst=10, global_rate=1.0, backoff_s=2.0)
    limiter = _FailureLimiter(limits, now=0.0)
    results = [limiter.fail(f"10.0.0.{i}", 0.0) for i in range(11)]  # one failure each
    assert results[:10] == [(0.0, "")] * 10 and results[10] == (2.0, "global")
    assert limiter.locked_for("10.0.0.99", 1.0) == (1.0, "global")


def test_the_address_table_stays_bounded(monkeypatch):
    monkeypatch.setattr("hardware.server._MAX_PEERS", 50)
    limiter = _FailureLimiter(AuthLimits(global_burst=10**6, global_rate=10**6), now=0.0)
    for i in range(500):
        limiter.fail(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(limiter._peers) <= 50


def test_refusal_log_is_a_few_lines_and_one_summary_per_interval(caplog):
    log = _RefusalLog(interval_s=10.0, lines=3, now=0.0)
    with caplog.at_level(logging.WARNING, logger="hardware.server"):
        for i in range(10_000):
            log.note(i * 0.0019, f"10.0.0.{i % 3}", "token" if i % 2 else "rate_limited", "x")
        log.tick(21.0)
        for i in range(5):  # the flood is over; a quiet interval, then a few refusals again
            log.note(40.0 + i, "10.0.0.9", "token", "y")
    messages = [r.getMessage() for r in caplog.records]
    # 19 s of flood: 3 lines and a summary, then only a summary (the flood went on); later 3
    # lines again, the 4th and 5th refusals wait for the summary of that interval.
    assert len(messages) == 8, messages
    summaries = [m for m in messages if "more requests" in m]
    assert len(summaries) == 2 and messages[3] == summaries[0] and messages[4] == summaries[1]
    assert "wrong or missing token" in summaries[0] and "3 address(es)" in summaries[0]
    total = sum(int(m.split("refused ")[1].split()[0]) for m in summaries)
    assert total == 10_000 - 3  # every refusal is in a line or a summary
    assert messages[5:] == ["refused 10.0.0.9: y"] * 3


def test_a_quiet_interval_logs_no_summary(caplog):
    log = _RefusalLog(interval_s=1.0, lines=5, now=0.0)
    with caplog.at_level(logging.WARNING, logger="hardware.server"):
        log.note(0.1, "a", "token", "one")
        log.tick(5.0)
    assert [r.getMessage() for r in caplog.records] == ["refused a: one"]


@pytest.mark.parametrize(
    "kwargs",
    [{"peer_burst": 0}, {"peer_rate": -1.0}, {"global_rate": float("inf")},
     {"max_backoff_s": 1.0, "backoff_s": 2.0}, {"log_lines": True}],
)
def test_bad_auth_limits_name_the_field(kwargs):
    with pytest.raises(ValueError, match=f"AuthLimits.{next(iter(kwargs))}"):
        AuthLimits(**kwargs)


def test_auth_limits_must_be_auth_limits():
    with pytest.raises(TypeError, match="auth_limits"):
        RobotServer(TwinRobot("reach-v3"), port=0, auth_limits={"peer_burst": 1})
