"""Task names and suites."""

import pytest
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from sim import ALL_TASKS, SUITE_NAMES, Suite, get_suite, resolve_task


def test_all_tasks_is_metaworld_order():
    assert ALL_TASKS == tuple(ALL_V3_ENVIRONMENTS)
    assert len(ALL_TASKS) == 50


def test_resolve_known_task_returns_it():
    assert resolve_task("push-v3") == "push-v3"


@pytest.mark.parametrize(("bad", "close"), [("psh-v3", "push-v3"), ("push", "push-v3")])
def test_unknown_task_suggests_close_match(bad, close):
    with pytest.raises(ValueError, match=f"unknown task '{bad}'.*did you mean '{close}'"):
        resolve_task(bad)


def test_unknown_task_lists_available():
    with pytest.raises(ValueError, match="Available: assembly-v3, basketball-v3"):
        resolve_task("zzzzzz")


def test_task_must_be_str():
    with pytest.raises(TypeError, match="task must be a str"):
        resolve_task(3)


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "goal_observable"),
    [
        ("MT1:push-v3", 1, 1, True),
        ("MT10", 10, 10, True),
        ("MT50", 50, 50, True),
        ("ML10", 10, 5, False),
        ("ML45", 45, 5, False),
    ],
)
def test_suite_sizes(name, n_train, n_test, goal_observable):
    suite = get_suite(name)
    assert suite.name == name
    assert (len(suite.train_tasks), len(suite.test_tasks)) == (n_train, n_test)
    assert suite.goal_observable is goal_observable


def test_mt_suites_test_on_train_tasks():
    suite = get_suite("MT10")
    assert suite.test_tasks == suite.train_tasks
    assert suite.tasks == suite.train_tasks
    assert suite.tasks[:2] == ("reach-v3", "push-v3")


def test_ml_suite_tasks_are_train_then_held_out():
    suite = get_suite("ML10")
    assert not set(suite.train_tasks) & set(suite.test_tasks)
    assert suite.tasks == suite.train_tasks + suite.test_tasks
    assert len(get_suite("ML45").tasks) == 50


def test_mt1_suite_holds_its_task():
    assert get_suite("MT1:push-v3").tasks == ("push-v3",)


def test_suite_is_frozen():
    suite = get_suite("MT10")
    with pytest.raises(AttributeError):
        suite.name = "MT50"


@pytest.mark.parametrize(
    ("bad", "close"), [("MT11", "MT10"), ("mt50", "MT50"), ("push-v3", "MT1:push-v3")]
)
def test_unknown_suite_suggests_close_match(bad, close):
    with pytest.raises(ValueError, match=f"unknown suite '{bad}'.*did you mean '{close}'"):
        get_suite(bad)


def test_unknown_suite_lists_forms():
    with pytest.raises(ValueError, match="MT1:<task>, MT10, MT50, ML10, ML45"):
        get_suite("nonsense")
    assert SUITE_NAMES == ("MT1:<task>", "MT10", "MT50", "ML10", "ML45")


def test_mt1_with_unknown_task_raises_task_error():
    with pytest.raises(ValueError, match="unknown task 'psh-v3'.*did you mean 'push-v3'"):
        get_suite("MT1:psh-v3")


def test_suite_validates_tasks():
    with pytest.raises(ValueError, match="unknown task"):
        Suite("mine", ("push-v3", "nope"), (), True)
    with pytest.raises(TypeError, match="Suite.train_tasks must be a tuple"):
        Suite("mine", ["push-v3"], (), True)


def test_custom_multi_task_suite():
    suite = get_suite("MT:reach-v3+push-v3")
    assert suite.train_tasks == ("reach-v3", "push-v3") and suite.goal_observable
    assert get_suite("MT:reach-v3,push-v3").train_tasks == suite.train_tasks
    with pytest.raises(ValueError, match="push-v3"):
        get_suite("MT:reach-v3,psh-v3")
    with pytest.raises(ValueError, match="twice"):
        get_suite("MT:reach-v3,reach-v3")
