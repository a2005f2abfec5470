"""TaskParams and ParamRanges: validation, serialisation, sampling."""

import math

import numpy as np
import pytest

from sim import ParamRanges, TaskParams


def test_defaults_are_stock():
    p = TaskParams()
    assert p.is_default()
    assert p.to_dict() == {
        "friction_scale": 1.0,
        "object_mass_scale": 1.0,
        "joint_damping_scale": 1.0,
        "actuator_gain_scale": 1.0,
        "obs_noise_std": 0.0,
        "action_noise_std": 0.0,
        "action_latency": 0,
    }
    assert not TaskParams(action_latency=1).is_default()


def test_field_names_in_declaration_order():
    assert TaskParams.field_names()[0] == "friction_scale"
    assert TaskParams.field_names() == ParamRanges.field_names()


def test_out_of_range_message_names_field_value_and_range():
    with pytest.raises(ValueError) as err:
        TaskParams(friction_scale=-1.0)
    assert str(err.value) == "TaskParams.friction_scale=-1.0 is out of range [0.1, 10.0]"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"object_mass_scale": 0.05},
        {"joint_damping_scale": 11.0},
        {"actuator_gain_scale": 0.0},
        {"obs_noise_std": -0.1},
        {"action_noise_std": 1.5},
        {"action_latency": 21},
        {"action_latency": -1},
    ],
)
def test_out_of_range_raises(kwargs):
    with pytest.raises(ValueError, match="is out of range"):
        TaskParams(**kwargs)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_raises(value):
    with pytest.raises(ValueError, match="friction_scale=.* is not finite"):
        TaskParams(friction_scale=value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"friction_scale": "1.0"},
        {"friction_scale": True},
        {"action_latency": 2.0},
        {"action_latency": None},
    ],
)
def test_wrong_type_raises(kwargs):
    with pytest.raises(TypeError, match="TaskParams"):
        TaskParams(**kwargs)


def test_numpy_values_are_normalised_to_python():
    p = TaskParams(friction_scale=np.float32(0.5), action_latency=np.int64(3))
    assert type(p.friction_scale) is float and type(p.action_latency) is int
    assert p == TaskParams(friction_scale=0.5, action_latency=3)


def test_frozen():
    with pytest.raises(AttributeError):
        TaskParams().friction_scale = 2.0


def test_json_round_trip_is_exact():
    p = TaskParams(
        friction_scale=0.1 + 0.2,
        object_mass_scale=1 / 3,
        joint_damping_scale=9.999999999999998,
        actuator_gain_scale=math.pi,
        obs_noise_std=1e-17,
        action_noise_std=0.123456789012345678,
        action_latency=7,
    )
    q = TaskParams.from_json(p.to_json())
    assert q == p
    assert q.to_dict() == p.to_dict()
    assert TaskParams.from_dict(p.to_dict()) == p


def test_from_dict_missing_keys_default():
    assert TaskParams.from_dict({"action_latency": 2}) == TaskParams(action_latency=2)


def test_from_dict_unknown_key_suggests_field():
    with pytest.raises(
        ValueError, match="unknown TaskParams field 'frction_scale'; did you mean 'friction_scale'"
    ):
        TaskParams.from_dict({"frction_scale": 1.0})


def test_from_json_rejects_non_object():
    with pytest.raises(ValueError, match="JSON object"):
        TaskParams.from_json("[1, 2]")


def test_from_dict_rejects_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        TaskParams.from_dict([("friction_scale", 1.0)])


RANGES = ParamRanges(
    friction_scale=(0.5, 2.0),
    object_mass_scale=(0.8, 1.2),
    joint_damping_scale=(0.9, 1.1),
    actuator_gain_scale=(0.7, 1.3),
    obs_noise_std=(0.0, 0.01),
    action_noise_std=(0.0, 0.05),
    action_latency=(0, 3),
)


def test_default_ranges_sample_default_point_without_randomness():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert ParamRanges().sample(rng) == TaskParams()
    assert rng.bit_generator.state == state


def test_sample_stays_in_range():
    rng = np.random.default_rng(0)
    samples = [RANGES.sample(rng) for _ in range(300)]
    assert all(RANGES.contains(s) for s in samples)
    assert {s.action_latency for s in samples} == {0, 1, 2, 3}
    assert all(isinstance(s.action_latency, int) for s in samples)
    assert len({s.friction_scale for s in samples}) == 300


def test_sample_is_deterministic_under_seeded_rng():
    a = [RANGES.sample(np.random.default_rng(42)) for _ in range(2)]
    b = RANGES.sample(np.random.default_rng(43))
    assert a[0] == a[1]
    assert a[0] != b


def test_sample_rejects_non_generator():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        RANGES.sample(0)


def test_ranges_validate():
    with pytest.raises(ValueError, match="low > high"):
        ParamRanges(friction_scale=(2.0, 1.0))
    with pytest.raises(ValueError, match="ParamRanges.friction_scale=20.0 is out of range"):
        ParamRanges(friction_scale=(1.0, 20.0))
    with pytest.raises(ValueError, match="not finite"):
        ParamRanges(obs_noise_std=(0.0, math.nan))
    with pytest.raises(TypeError, match="pair"):
        ParamRanges(friction_scale=1.0)
    with pytest.raises(TypeError, match="int"):
        ParamRanges(action_latency=(0, 1.5))


def test_ranges_dict_and_json_round_trip():
    assert ParamRanges.from_dict(RANGES.to_dict()) == RANGES
    assert ParamRanges.from_json(RANGES.to_json()) == RANGES
    assert ParamRanges.from_dict({"friction_scale": [0.5, 1.5]}).friction_scale == (0.5, 1.5)


def test_ranges_unknown_key_suggests_field():
    with pytest.raises(ValueError, match="did you mean 'action_latency'"):
        ParamRanges.from_dict({"action_latncy": (0, 1)})


def test_fixed_range_samples_its_point():
    p = TaskParams(friction_scale=0.7, action_latency=2)
    assert ParamRanges.fixed(p).sample(np.random.default_rng(0)) == p
