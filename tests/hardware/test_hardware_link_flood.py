"""Denial of service without the token: an authenticated client keeps its control loop while
hostile clients flood the server with oversized hellos and wrong tokens."""

from __future__ import annotations

import json
import logging
import textwrap
import time

import numpy as np
import pytest

from hardware import RemoteRobot, RobotServer, SafeRobot, SafetyConfig, TwinRobot
from tests.hardware.conftest import TOKEN, kill, python_process, read_until

pytestmark = pytest.mark.timeout(90)

# The hostile side, in its own process (its CPU and GIL are not the client's): N_BIG
# connections that keep sending 15 MiB hellos, N_GUESS that send wrong-token hellos as fast
# as a 1 ms loop allows (~3 000 a second together, above the ~1 200 a second of the report).
HOSTILE = textwrap.dedent("""
    import json, sys, time
    import zmq
    from zmq.utils.monitor import recv_monitor_message
    from hardware import wire

    port, seconds, n_big, n_guess = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ctx = zmq.Context()

    def dealer(hwm):
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.connect(f"tcp://127.0.0.1:{port}")
        return sock

    big = wire.pack({"op": "hello", "id": 1, "version": wire.PROTOCOL_VERSION,
                     "token": "x" * (15 * 2**20), "client": "big"})
    bigs = [dealer(2) for _ in range(n_big)]
    monitors = [s.get_monitor_socket(zmq.EVENT_DISCONNECTED) for s in bigs]
    guessers = [dealer(1000) for _ in range(n_guess)]
    n = {"big_sent": 0, "big_replies": 0, "big_dropped": 0, "guesses": 0, "accepted": 0,
         "reasons": {}}
    print("flooding", flush=True)
    # at least `seconds`, and on until 1 500 guesses went out (at most 8 s more): how fast this
    # loop runs depends on how fast the server drains the big hellos, so time alone does not
    # fix the flood's volume (a slower VM sent only 816 guesses in 3 + 3 s)
    rid, end = 0, time.monotonic() + seconds
    while time.monotonic() < end or (n["guesses"] < 1500 and time.monotonic() < end + 8.0):
        for s in bigs:
            try:
                s.send(big, zmq.NOBLOCK)
                n["big_sent"] += 1
            except zmq.Again:
                pass
            while s.poll(0):
                s.recv()
                n["big_replies"] += 1
        for s in guessers:
            rid += 1
            try:
                s.send(wire.pack({"op": "hello", "id": rid, "version": wire.PROTOCOL_VERSION,
                                  "token": f"guess-{rid}", "client": "guesser"}), zmq.NOBLOCK)
                n["guesses"] += 1
            except zmq.Again:
                pass
            while s.poll(0):
                reply = wire.unpack(s.recv())
                n["accepted"] += bool(reply.get("ok"))
                key = str(reply.get("reason", reply.get("error")))
                n["reasons"][key] = n["reasons"].get(key, 0) + 1
        for m in monitors:
            while m.poll(0):
                recv_monitor_message(m)
                n["big_dropped"] += 1
        time.sleep(0.001)
    print("RESULT " + json.dumps(n), flush=True)
""")


class _Volume(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


def test_hostile_flood_does_not_disturb_the_authenticated_client():
    twin = TwinRobot("reach-v3", seed=0, realtime=True)  # 80 Hz, paced by the server
    server = RobotServer(twin, port=0, token=TOKEN, link_timeout_s=1.0)
    volume = _Volume()
    server_log = logging.getLogger("hardware.server")
    server_log.addHandler(volume)
    previous_level = server_log.level
    server_log.setLevel(logging.INFO)
    server.start_in_thread()
    # The deployment's view: safety layer and watchdog on the client, a 1 s reply timeout. The
    # watchdog is 0.25 s (deploy's default is 0.1 s) to leave room for a loaded shared machine:
    # with the fix the longest period under this flood was ~17 ms (80 Hz nominal: 12.5 ms);
    # before it, periods were 0.25 to 1.3 s and 12 steps ran instead of ~200.
    robot = SafeRobot(RemoteRobot("127.0.0.1", server.port, token=TOKEN, timeout_s=1.0),
                      SafetyConfig.for_metaworld(watchdog_timeout_s=0.25))
    proc = None
    try:
        robot.connect()
        before = len(volume.records)  # the start-up and connect lines
        proc = python_process("-c", HOSTILE, str(server.port), "3.0", "3", "3")
        read_until(proc, "flooding", timeout_s=30)
        # The first command arms the watchdog: send it once the flood runs, not before the
        # flooder's interpreter starts (that start-up took longer than 0.25 s on a loaded CI box).
        robot.send_action(np.zeros(4, np.float32))
        steps, t_end = 0, time.monotonic() + 2.5
        while time.monotonic() < t_end:
            robot.get_observation()  # raises RobotLinkError on a dead link
            robot.send_action(np.array([0.05, 0.0, 0.0, 0.0], np.float32))  # Watchdog...Error
            steps += 1
        assert robot.interventions["watchdog"] == 0 and not robot.tripped
        assert robot.robot.link_alive and server.link_losses == 0 and twin.stop_times == []
        flood_log = volume.records[before:]
        result = json.loads(read_until(proc, "RESULT ", timeout_s=30).split("RESULT ", 1)[1])
    finally:
        if proc is not None:
            kill(proc)
        robot.disconnect()
        server.close()
        server_log.removeHandler(volume)
        server_log.setLevel(previous_level)
    assert steps >= 50  # the loop really ran (80 Hz nominal: ~200)
    # Every hostile connection was refused: no guess got in, oversized hellos were never read.
    assert result["guesses"] >= 1000 and result["accepted"] == 0
    assert set(result["reasons"]) <= {"token", "rate_limited"}
    assert result["reasons"].get("rate_limited", 0) > 0
    assert result["big_sent"] > 0 and result["big_replies"] == 0 and result["big_dropped"] > 0
    # Guessing was throttled: a handful of token checks, not thousands.
    limits = server.auth_limits
    assert server.refusals["token"] <= limits.peer_burst + 6, server.refusals
    # The log stays a few lines (no summary yet: the flood is shorter than the interval).
    assert len(flood_log) <= limits.log_lines + 1, flood_log
    assert sum(len(line) for line in flood_log) < 2000
