"""The task-distribution file format: exact round trips, atomic saves, versions, refusals."""

import copy
import json
import os

import pytest

from curricula import (
    SCHEMA_VERSION,
    Box,
    Component,
    CurriculumError,
    CurriculumTypeError,
    EmpiricalInit,
    LogNormal,
    Provenance,
    TaskDistribution,
)
from tests.curricula.test_distribution import rich_distribution


def tricky_distribution() -> TaskDistribution:
    """Floats that print badly, nested diagnostics, unicode, a full covariance."""
    base = rich_distribution()
    extra = Component(
        "sim-fit",
        [LogNormal(("friction_scale", "actuator_gain_scale"), (1 / 3, -0.1),
                   ((0.1, 1e-3), (1e-3, 0.2))),
         EmpiricalInit({"reach-v3": [(1e-300, 0.1 + 0.2, -0.0, 2.5e-7, 0.7, 0.3)]})],
        weight=0.1,
        tasks=["reach-v3"],
        provenance=Provenance(
            "sim", cycle=0, episodes=7,
            diagnostics={"ll": -12.25, "per_param": {"friction": [0.1, None, True]}, "ok": "é"},
            note="fitted by replay likelihood — cycle 0",
        ),
    )
    return base.child(components=(*base.components, extra), description="π₁ ⇒ cycle 1")


# ---- round trips


def test_round_trip_is_exact():
    dist = tricky_distribution()
    text = dist.to_json()
    back = TaskDistribution.from_json(text)
    assert back == dist
    assert back.to_json() == text
    assert TaskDistribution.from_json(dist.to_json(indent=None)) == dist
    assert back.component("sim-fit").factors[1].points["reach-v3"][0][1] == 0.1 + 0.2


def test_document_header():
    d = json.loads(tricky_distribution().to_json())
    assert d["format"] == "robolearn.task_distribution"
    assert d["schema_version"] == SCHEMA_VERSION == 1
    assert (d["version"], d["parent"]) == (2, 1)
    assert list(d) == ["format", "schema_version", "version", "parent", "description", "tasks",
                       "components"]
    prov = d["components"][1]["provenance"]
    assert prov == {"source": "real", "cycle": 1, "episodes": 20, "diagnostics": {"nll": 1.5},
                    "note": ""}


def test_optional_fields_take_defaults():
    doc = {"format": "robolearn.task_distribution", "schema_version": 1, "version": 1,
           "tasks": {"push-v3": 1},
           "components": [{"name": "c", "factors": [{"kind": "discrete",
                                                     "field": "action_latency",
                                                     "values": [0, 2]}]}]}
    dist = TaskDistribution.from_dict(doc)
    assert dist.parent is None and dist.description == ""
    comp = dist.components[0]
    assert (comp.weight, comp.tasks, comp.provenance) == (1.0, None, Provenance())
    assert comp.factors[0].weights == (1.0, 1.0)
    assert TaskDistribution.from_json(dist.to_json()) == dist


def test_save_load_atomic(tmp_path):
    dist = tricky_distribution()
    path = dist.save(tmp_path / "dist.json")
    assert path.read_text(encoding="utf-8") == dist.to_json() + "\n"
    assert TaskDistribution.load(path) == dist
    assert os.listdir(tmp_path) == ["dist.json"]  # no temp file left


def test_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "dist.json"
    old = rich_distribution()
    old.save(path)

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        tricky_distribution().save(path)
    assert TaskDistribution.load(path) == old
    assert os.listdir(tmp_path) == ["dist.json"]


def test_load_error_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    doc = json.loads(rich_distribution().to_json())
    doc["components"][0]["weight"] = -1
    path.write_text(json.dumps(doc))
    with pytest.raises(CurriculumError) as err:
        TaskDistribution.load(path)
    assert str(err.value).startswith(f"{path}: components[0].weight: -1 is out of range")


# ---- versions


def test_child_increments_version_and_sets_parent():
    d1 = rich_distribution()
    d2 = d1.child(tasks={"push-v3": 1.0, "reach-v3": 5.0})
    d3 = d2.child(description="next")
    assert [(d.version, d.parent) for d in (d1, d2, d3)] == [(1, None), (2, 1), (3, 2)]
    assert d3.task_probabilities()["reach-v3"] == pytest.approx(5 / 6)
    assert d1.fingerprint() != d2.fingerprint()
    assert d2.fingerprint() == TaskDistribution.from_json(d2.to_json()).fingerprint()
    with pytest.raises(TypeError, match="did you mean 'components'"):
        d1.child(component=())


# ---- refusals: each names the field (and the closest name when one is unknown)


def mutate(fn):
    doc = json.loads(tricky_distribution().to_json())
    fn(doc)
    return doc


def refusal(doc) -> str:
    with pytest.raises(CurriculumError) as err:
        TaskDistribution.from_dict(doc)
    return str(err.value)


def _set(path, value):
    def fn(doc):
        obj = doc
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return fn


def _rename(path, old, new):
    def fn(doc):
        obj = doc
        for key in path:
            obj = obj[key]
        obj[new] = obj.pop(old)
    return fn


CASES = [
    # unknown fields: the path, the name, the closest valid name
    (_rename([], "description", "descripton"),
     ["task distribution: unknown task distribution field 'descripton'",
      "did you mean 'description'?"]),
    (_rename(["components", 0], "provenance", "provenence"),
     ["components[0]: unknown component field 'provenence'", "did you mean 'provenance'?"]),
    (_rename(["components", 1, "provenance"], "episodes", "episdes"),
     ["components[1].provenance: unknown provenance field 'episdes'",
      "did you mean 'episodes'?"]),
    (_rename(["components", 0, "factors", 0, "ranges"], "friction_scale", "friction"),
     ["components[0].factors[0].ranges: unknown TaskParams field 'friction'",
      "did you mean 'friction_scale'?"]),
    (_set(["components", 0, "factors", 0, "kind"], "boxx"),
     ["components[0].factors[0].kind: unknown factor kind 'boxx'", "did you mean 'box'?"]),
    (_set(["components", 1, "provenance", "source"], "reel"),
     ["components[1].provenance.source: unknown source 'reel'", "did you mean 'real'?"]),
    (_set(["tasks", "pushv3"], 1.0),
     ["tasks.pushv3: unknown task 'pushv3'", "did you mean 'push-v3'"]),
    (_set(["components", 0, "factors", 1, "fields"], ["object_mass"]),
     ["components[0].factors[1].fields[0]: unknown TaskParams field 'object_mass'",
      "did you mean 'object_mass_scale'?"]),
    # out-of-range values
    (_set(["components", 0, "factors", 0, "ranges", "friction_scale"], [0.05, 2.0]),
     ["components[0].factors[0].ranges.friction_scale: friction_scale=0.05 is out of range "
      "[0.1, 10.0]"]),
    (_set(["components", 0, "factors", 0, "ranges", "action_latency"], [0, 25]),
     ["components[0].factors[0].ranges.action_latency: action_latency=25 is out of range "
      "[0, 20]"]),
    (_set(["components", 0, "factors", 0, "ranges", "friction_scale"], [2.0, 1.0]),
     ["ranges.friction_scale: [2.0, 1.0] has low > high"]),
    (_set(["components", 1, "factors", 0, "values"], [0, 1, 21]),
     ["components[1].factors[0].values[2]: action_latency=21 is out of range [0, 20]"]),
    (_set(["components", 1, "factors", 1, "points"], [[0.8, 11.0], [1.3, 0.9]]),
     ["components[1].factors[1].points[0][1]: joint_damping_scale=11.0 is out of range"]),
    (_set(["components", 0, "weight"], -0.5),
     ["components[0].weight: -0.5 is out of range; expected a weight >= 0"]),
    (_set(["components", 1, "provenance", "cycle"], -1),
     ["components[1].provenance.cycle: -1 is out of range"]),
    (_set(["components", 2, "factors", 0, "mean"], [3.0, 0.0]),
     ["components[2].factors[0].mean[0]: 3.0 (log friction_scale", "outside the log-limits"]),
    (_set(["version"], 0), ["version: 0 is out of range"]),
    (_set(["parent"], 2), ["parent: parent 2 is not older than version 2"]),
    (_set(["schema_version"], 2), ["schema_version: schema version 2 is newer", "upgrade"]),
    # weights that do not sum to a positive number
    (_set(["tasks"], {"push-v3": 0, "reach-v3": 0.0}),
     ["tasks: task weights [0.0, 0.0] sum to 0.0; expected a positive sum"]),
    (_set(["components", 1, "factors", 0, "weights"], [0, 0, 0]),
     ["components[1].factors[0].weights: weights [0.0, 0.0, 0.0] sum to 0.0"]),
    (_set(["components", 1, "factors", 2, "weights", "push-v3"], [0.0, 0.0]),
     ["components[1].factors[2].weights.push-v3: weights [0.0, 0.0] sum to 0.0"]),
    (lambda d: [c.update(weight=0.0) for c in d["components"] if c["name"] != "real-1"],
     ["components: task 'reach-v3' has no component with a positive weight"]),
    (_set(["components", 1, "factors", 0, "weights"], [1.0, -1.0, 1.0]),
     ["components[1].factors[0].weights[1]: -1.0 is out of range"]),
    # structure
    (lambda d: d.pop("components"), ["missing required task distribution field 'components'"]),
    (_set(["format"], "robolearn.episode_store"),
     ["format: 'robolearn.episode_store' is not a task distribution"]),
    (_set(["tasks"], ["push-v3"]), ["tasks: expected a {task: weight} object, got list"]),
    (_set(["components", 1, "name"], "prior"),
     ["components[1].name: name 'prior' is already used by components[0]"]),
    (_set(["components", 1, "tasks"], ["push-v3", "pick-place-v3"]),
     ["components[1].tasks[1]: 'pick-place-v3' is not one of the distribution's tasks"]),
    (_set(["components", 1, "tasks"], None),
     ["components[1].factors[2].points: no rand_vec points for task(s) 'reach-v3'"]),
    (lambda d: d["components"][0]["factors"].append(
        {"kind": "discrete", "field": "action_latency", "values": [1]}),
     ["components[0].factors[2]: field 'action_latency' is already drawn by factors[0] (box)"]),
    (_set(["components", 2, "factors", 0, "cov"], [[0.1, 0.2], [0.2, 0.1]]),
     ["components[2].factors[0].cov: the covariance", "is not positive definite"]),
    (_set(["components", 2, "factors", 1, "points", "reach-v3"], [[0.1, 0.2], [0.1]]),
     ["components[2].factors[1].points.reach-v3[1]: rand_vec has length 1"]),
    (_set(["components", 1, "provenance", "cycle"], None),
     ["components[1].provenance.cycle: source 'real' needs the cycle k"]),
]


@pytest.mark.parametrize("fn, expected", CASES)
def test_invalid_document_is_refused_with_the_field_named(fn, expected):
    message = refusal(mutate(fn))
    assert message.startswith("task distribution: ")
    for part in expected:
        assert part in message, message


def test_wrong_types_are_type_errors_too():
    doc = mutate(_set(["components", 1, "factors", 0, "values"], [0, 1.5]))
    with pytest.raises(CurriculumTypeError) as err:
        TaskDistribution.from_dict(doc)
    assert isinstance(err.value, TypeError)
    expected = "components[1].factors[0].values[1]: expected an integer, got float 1.5"
    assert expected in str(err.value)


def test_the_valid_document_is_accepted():
    # The refusals above come from the mutation, not from the document they start from.
    doc = mutate(lambda d: None)
    assert TaskDistribution.from_dict(copy.deepcopy(doc)) == tricky_distribution()


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"format": 1, "format": 2}', "duplicate key 'format'"),
        ('{"tasks": {"push-v3": NaN}}', "NaN is not valid JSON"),
        ('{"tasks": ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
    ],
)
def test_bad_json_text_is_refused(text, expected):
    with pytest.raises(CurriculumError, match="task distribution: ") as err:
        TaskDistribution.from_json(text)
    assert expected in str(err.value)


def test_constructor_errors_name_the_class_and_field():
    with pytest.raises(CurriculumError) as err:
        Box({"friction_scale": (0.5, 20.0)})
    assert str(err.value) == ("Box: ranges.friction_scale: friction_scale=20.0 is out of range "
                              "[0.1, 10.0] (sim.params.LIMITS)")
    with pytest.raises(CurriculumError, match=r"^Component: factors\[1\]: field 'friction_scale' "
                       r"is already drawn by factors\[0\] \(log_normal\)"):
        Component("c", [Box({"friction_scale": (0.5, 2.0)}),
                        LogNormal.diagonal(["friction_scale"], [0.0], [0.1])][::-1])
    with pytest.raises(CurriculumError, match=r"^TaskDistribution: components: expected a list"):
        TaskDistribution(["push-v3"], [])
