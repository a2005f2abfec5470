"""RemoteRobot + RobotServer over real loopback sockets: round trip, refusals, dead links."""

from __future__ import annotations

import os
import re
import signal
import textwrap
import threading
import time

import numpy as np
import pytest
import zmq

from hardware import (
    RemoteRobot,
    RobotLinkError,
    RobotRefusedError,
    RobotServer,
    SafetyConfig,
    TwinRobot,
    WatchdogTrippedError,
    wire,
)
from tests.hardware.conftest import TOKEN, kill, python_process, read_until, wait_for

pytestmark = pytest.mark.timeout(60)


def client(server: RobotServer, **kwargs) -> RemoteRobot:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("timeout_s", 2.0)
    return RemoteRobot("127.0.0.1", server.port, **kwargs)


def test_round_trip(served_twin):
    server, twin = served_twin
    with client(server) as robot:
        assert robot.action_spec == twin.action_spec
        assert robot.observation_spec == twin.observation_spec
        obs = robot.get_observation()
        local = twin.get_observation()
        assert set(obs) == set(local)
        for key in obs:
            np.testing.assert_array_equal(obs[key], local[key])
            assert obs[key].dtype == local[key].dtype
        action = np.array([0.1, -0.2, 0.3, 0.5], np.float32)
        sent = robot.send_action(action)
        np.testing.assert_array_equal(sent, action)
        np.testing.assert_array_equal(twin.executed_actions[-1], action)
        obs = robot.reset_episode(seed=4)
        assert int(obs["step"]) == 0
        assert robot.status()["link_losses"] == 0
    assert len(twin.stop_times) == 2  # the context manager's stop, then the server's on goodbye
    assert server.stop_log[-1][1].endswith("disconnected")


def test_backend_errors_come_back_typed(served_twin):
    server, _ = served_twin
    with client(server) as robot:
        with pytest.raises(ValueError, match="finite action"):
            robot.send_action(np.array([np.nan, 0, 0, 0], np.float32))
        with pytest.raises(TypeError, match="numeric"):
            robot.send_action(["a", "b", "c", "d"])
        robot.send_action(np.zeros(4, np.float32))  # the link survives both


@pytest.mark.parametrize("token", ["wrong", None])
def test_wrong_or_missing_token_is_refused(served_twin, token, caplog):
    server, _ = served_twin
    with caplog.at_level("WARNING", logger="hardware.server"):
        with pytest.raises(RobotRefusedError, match="token"):
            client(server, token=token).connect()
    assert any("token" in r.getMessage() for r in caplog.records)  # the server says why too
    with client(server) as robot:  # a good client still gets in
        robot.get_observation()


def test_protocol_version_mismatch_is_refused_by_the_server(served_twin):
    server, _ = served_twin
    robot = client(server)
    robot.protocol_version = wire.PROTOCOL_VERSION + 1
    with pytest.raises(RobotRefusedError, match="protocol version mismatch"):
        robot.connect()
    assert not robot.is_connected


def test_protocol_version_mismatch_is_refused_by_the_client():
    """A server that answers with another version (a fake one: a raw ROUTER socket)."""
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")

    def answer_once():
        if sock.poll(5000):
            identity, payload = sock.recv_multipart()
            rid = wire.unpack(payload)["id"]
            sock.send_multipart([identity, wire.pack({"id": rid, "ok": True, "version": 99})])

    thread = threading.Thread(target=answer_once)
    thread.start()
    try:
        with pytest.raises(RobotRefusedError, match="protocol 99"):
            RemoteRobot("127.0.0.1", port, timeout_s=2.0).connect()
    finally:
        thread.join(10)
        sock.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "robot.example.com", "*"])
def test_non_loopback_bind_needs_a_token(host):
    with pytest.raises(ValueError, match="without a token"):
        RobotServer(TwinRobot("reach-v3"), host=host, port=0)
    RobotServer(TwinRobot("reach-v3"), host=host, port=0, token="t")  # allowed; not bound


def test_one_controller_at_a_time(served_twin):
    server, _ = served_twin
    with client(server) as first:
        with pytest.raises(RobotRefusedError, match="busy"):
            client(server).connect()
        first.get_observation()


def test_heartbeats_keep_an_idle_client_connected(served_twin):
    server, twin = served_twin
    with client(server) as robot:
        time.sleep(4 * server.link_timeout_s)
        assert twin.stop_times == [] and server.link_losses == 0
        robot.send_action(np.zeros(4, np.float32))


def test_malformed_requests_do_not_hurt_the_server(served_twin):
    server, _ = served_twin
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(server.address)
    try:
        import pickle

        raw.send(pickle.dumps({"op": "stop"}))
        assert raw.poll(5000)
        assert wire.unpack(raw.recv())["error"] == "malformed"
        raw.send(wire.pack({"op": "send_action", "id": 1, "session": "forged"}))
        assert raw.poll(5000)
        assert wire.unpack(raw.recv())["error"] == "no_session"
    finally:
        raw.close()
    with client(server) as robot:
        robot.get_observation()


def test_server_side_safety_and_watchdog():
    twin = TwinRobot("reach-v3")
    safety = SafetyConfig.for_metaworld(max_delta=0.2, watchdog_timeout_s=0.15)
    with RobotServer(twin, port=0, token=TOKEN, link_timeout_s=2.0, safety=safety) as server:
        with client(server) as robot:
            sent = robot.send_action(np.array([np.nan, 0, 0, 0]))
            assert sent.tolist() == [0.0, 0.0, 0.0, 0.0]
            assert robot.send_action(np.ones(4)).tolist() == pytest.approx([0.2] * 4)
            wait_for(lambda: twin.stop_times, timeout_s=2.0)
            with pytest.raises(WatchdogTrippedError, match="rearm"):
                robot.send_action(np.zeros(4))
            robot.rearm()
            robot.send_action(np.zeros(4))
            status = robot.status()
    assert status["interventions"]["nonfinite"] == 1
    assert status["interventions"]["watchdog"] == 1
    assert all(np.isfinite(a).all() for a in twin.executed_actions)


def test_killed_server_raises_link_error_within_the_timeout():
    timeout = 0.5
    proc = python_process("-m", "hardware.server", "--backend", "twin", "--task", "reach-v3",
                          "--port", "0", "--token", TOKEN, "--no-realtime")
    try:
        line = read_until(proc, "hardware.server listening on tcp://", timeout_s=30)
        port = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", line).group(1))
        robot = RemoteRobot("127.0.0.1", port, token=TOKEN, timeout_s=timeout)
        robot.connect()
        for _ in range(5):
            robot.send_action(np.zeros(4, np.float32))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        t0 = time.monotonic()
        with pytest.raises(RobotLinkError) as err:
            for _ in range(1000):  # the first call after the kill may already fail
                robot.send_action(np.zeros(4, np.float32))
        elapsed = time.monotonic() - t0
        assert elapsed <= timeout + 0.3
        assert err.value.address == f"tcp://127.0.0.1:{port}" and err.value.address in str(err.value)
        assert "send_action" in err.value.what
        t1 = time.monotonic()
        with pytest.raises(RobotLinkError, match="link is down"):
            robot.get_observation()
        assert time.monotonic() - t1 < 0.1  # later calls fail at once
        robot.disconnect()  # never raises for a dead link
        assert not robot.is_connected
    finally:
        kill(proc)


CLIENT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from hardware import RemoteRobot
    robot = RemoteRobot("127.0.0.1", int(sys.argv[1]), token=sys.argv[2], timeout_s=2.0)
    robot.connect()
    robot.send_action(np.zeros(4, np.float32))
    print("client ready", flush=True)
    while True:
        robot.send_action(np.array([0.1, 0.0, 0.0, 0.0], np.float32))
        time.sleep(0.0125)
""")


def test_killed_client_makes_the_server_stop_the_robot(served_twin):
    server, twin = served_twin
    proc = python_process("-c", CLIENT, str(server.port), TOKEN)
    try:
        read_until(proc, "client ready", timeout_s=30)
        time.sleep(0.1)
        assert twin.stop_times == []
        os.kill(proc.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        proc.wait(10)
        t_stop = wait_for(lambda: twin.stop_times, timeout_s=5.0)
        latency = twin.stop_times[0] - t_kill
        assert latency <= server.link_timeout_s + 0.2, latency
        assert t_stop - t_kill >= 0
        assert server.link_losses == 1 and "link to client" in server.stop_log[0][1]
    finally:
        kill(proc)
    with client(server) as robot:  # the session ended: a new controller can take over
        robot.get_observation()


def test_server_command_line_stops_and_disconnects_on_sigterm():
    proc = python_process("-m", "hardware.server", "--port", "0", "--token", TOKEN)
    try:
        line = read_until(proc, "hardware.server listening on tcp://", timeout_s=30)
        port = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", line).group(1))
        robot = RemoteRobot("127.0.0.1", port, token=TOKEN, timeout_s=2.0)
        robot.connect()
        robot.send_action(np.zeros(4, np.float32))  # real time, server-side safety on
        proc.send_signal(signal.SIGTERM)
        read_until(proc, "robot stopped and disconnected", timeout_s=10)
        assert proc.wait(10) == 0
        with pytest.raises(RobotLinkError):
            robot.get_observation()
        with pytest.raises(RobotLinkError, match="cannot stop"):
            robot.stop()  # honest: this client could not stop it (the server did, above)
        robot.disconnect()
    finally:
        kill(proc)
