"""The Robot protocol, Spec, the context manager and the not-connected errors."""

from __future__ import annotations

import numpy as np
import pytest

from hardware import (
    RemoteRobot,
    Robot,
    RobotNotConnectedError,
    SafeRobot,
    SafetyConfig,
    Spec,
    TwinRobot,
)

pytestmark = pytest.mark.timeout(60)


class FakeArm(Robot):
    """Mock hardware: records calls; optionally fails in stop()."""

    observation_spec = Spec((3,), "float64")
    action_spec = Spec((4,), "float32", low=-1.0, high=1.0)

    def __init__(self, fail_stop: bool = False) -> None:
        self.name = "fake"
        self.calls: list[str] = []
        self.fail_stop = fail_stop
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        self.calls.append("connect")
        self._connected = True

    def get_observation(self) -> dict[str, np.ndarray]:
        return {"state": np.zeros(3), "ee_pos": np.zeros(3)}

    def send_action(self, action: np.ndarray) -> np.ndarray:
        self.calls.append("send_action")
        return np.asarray(action, np.float32)

    def stop(self) -> None:
        self.calls.append("stop")
        if self.fail_stop:
            raise RuntimeError("stop failed")

    def disconnect(self) -> None:
        self.calls.append("disconnect")
        self._connected = False


def test_spec_validates_and_normalises():
    spec = Spec(shape=[4], dtype=np.float32, low=-1, high=1, names=["a", "b", "c", "d"])
    assert spec.shape == (4,) and spec.dtype == "float32"
    assert spec.low == (-1.0,) * 4 and spec.names == ("a", "b", "c", "d")
    assert Spec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (4,), "dtype": "object"}, "numeric"),
        ({"shape": (4,), "low": (0.0, 0.0)}, "4"),
        ({"shape": (2,), "low": 1.0, "high": 0.0}, "low must be <= "),
        ({"shape": (2,), "names": ("x",)}, "names"),
        ({"shape": (-1,)}, "shape"),
    ],
)
def test_spec_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Spec(**kwargs)


def test_spec_contains_rejects_nan_and_out_of_bounds():
    spec = Spec((2,), "float32", low=-1.0, high=1.0)
    assert spec.contains([0.5, -0.5])
    assert not spec.contains([np.nan, 0.0])
    assert not spec.contains([1.5, 0.0])
    assert not spec.contains([0.0, 0.0, 0.0])


@pytest.mark.parametrize("make", [FakeArm, lambda: TwinRobot("reach-v3"),
                                  lambda: SafeRobot(TwinRobot("reach-v3")), RemoteRobot])
def test_backends_satisfy_the_protocol_members(make):
    robot = make()
    for member in ("connect", "get_observation", "send_action", "stop", "disconnect",
                   "is_connected", "__enter__", "__exit__"):
        assert hasattr(type(robot), member)
    assert robot.is_connected is False
    assert isinstance(robot, Robot)  # also before connect (a remote's specs come later)


@pytest.mark.parametrize("make", [lambda: TwinRobot("reach-v3"),
                                  lambda: SafeRobot(TwinRobot("reach-v3")),
                                  lambda: RemoteRobot(port=1)])
@pytest.mark.parametrize("call", [lambda r: r.get_observation(),
                                  lambda r: r.send_action(np.zeros(4, np.float32))])
def test_calls_before_connect_raise_a_clear_error(make, call):
    robot = make()
    with pytest.raises(RobotNotConnectedError) as err:
        call(robot)
    message = str(err.value)
    assert type(robot).__name__ in message and "connect()" in message


def test_remote_specs_before_connect_raise_not_connected():
    with pytest.raises(RobotNotConnectedError, match="action_spec is not available before"):
        _ = RemoteRobot(port=1).action_spec


@pytest.mark.parametrize("make", [lambda: TwinRobot("reach-v3"),
                                  lambda: SafeRobot(TwinRobot("reach-v3")),
                                  lambda: RemoteRobot(port=1)])
def test_stop_and_disconnect_before_connect_are_no_ops(make):
    robot = make()
    robot.stop()
    robot.disconnect()
    robot.disconnect()
    assert robot.is_connected is False


def test_context_manager_connects_then_stops_and_disconnects():
    arm = FakeArm()
    with arm as robot:
        assert robot is arm and arm.is_connected
        robot.send_action(np.zeros(4))
    assert arm.calls == ["connect", "send_action", "stop", "disconnect"]


def test_context_manager_stops_and_disconnects_on_exception():
    arm = FakeArm()
    with pytest.raises(KeyError, match="boom"), arm:
        raise KeyError("boom")
    assert arm.calls == ["connect", "stop", "disconnect"]


def test_context_manager_disconnects_when_stop_fails_and_keeps_the_original_error():
    arm = FakeArm(fail_stop=True)
    with pytest.raises(KeyError, match="boom"), arm:
        raise KeyError("boom")
    assert arm.calls == ["connect", "stop", "disconnect"]
    assert not arm.is_connected


def test_context_manager_raises_a_stop_failure_after_disconnecting():
    arm = FakeArm(fail_stop=True)
    with pytest.raises(RuntimeError, match="stop failed"), arm:
        pass
    assert not arm.is_connected


def test_twin_context_manager_records_the_stop():
    robot = TwinRobot("reach-v3")
    with pytest.raises(ValueError, match="boom"), robot:
        robot.send_action(np.zeros(4, np.float32))
        raise ValueError("boom")
    assert len(robot.stop_times) == 1 and not robot.is_connected


def test_stop_is_idempotent(twin):
    twin.stop()
    twin.stop()
    assert len(twin.stop_times) == 2
    twin.send_action(np.zeros(4, np.float32))  # a stop holds, it does not latch
    assert len(twin.executed_actions) == 1


def test_safe_robot_wraps_a_fake_arm_and_resolves_limits():
    arm = FakeArm()
    config = SafetyConfig(action_low=(-0.5,) * 4, max_delta=2.0, watchdog_timeout_s=None)
    with SafeRobot(arm, config) as robot:
        assert robot.action_spec.low == (-0.5,) * 4 and robot.action_spec.high == (1.0,) * 4
        sent = robot.send_action(np.array([-1.0, 0.0, 0.0, 0.0]))
    assert sent.tolist() == [-0.5, 0.0, 0.0, 0.0]
    assert arm.calls[-2:] == ["stop", "disconnect"]
