"""robolearn pearl: label files (every refusal, a round trip through the store), the loop's
pieces on synthetic pools (transfer with the orientation check, the most confident pairs,
episode weights, segments), the GRAPE hook for an external score, and one tiny end-to-end
transfer → reward → improved checkpoint that loads and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robolearn import cli
from robolearn.align.labels import LabelError, LabelSet, read_labels, write_labels
from robolearn.align.pearl import (
    episode_weights,
    segments,
    target_pairs,
    transfer,
)
from robolearn.align.pearl_config import PearlConfig, PoolConfig, TransferConfig
from robolearn.align.pools import Pool, pool_plan
from robolearn.data import EpisodeStore
from robolearn.errors import ConfigError
from tests.support import make_episode

SRC, OTHER = "window-open-v3", "reach-v3"


@pytest.fixture
def store(tmp_path):
    """6 episodes of SRC (0-5; seeds 100+i), then 2 of OTHER (6-7), the last one incomplete."""
    s = EpisodeStore.create(tmp_path / "s.zarr", obs_dim=5, action_dim=2)
    for i in range(6):
        s.add_episode(make_episode(i, 10), task=SRC, seed=100 + i)
    s.add_episode(make_episode(6, 10), task=OTHER, seed=106)
    s.add_episode(make_episode(7, 10), task=SRC, seed=107, complete=False)
    s.close()
    return EpisodeStore.open(tmp_path / "s.zarr")


def _csv(path: Path, rows: list[str], header: str = "episode_a,episode_b,label") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _json(path: Path, pairs: list[dict], **top) -> Path:
    doc = {"format": "robolearn.preference_labels", "schema_version": 1, "task": SRC,
           "pairs": pairs} | top
    path.write_text(json.dumps(doc))
    return path


def test_label_round_trip_through_the_store(tmp_path, store):
    labels = LabelSet(SRC, [0, 2, 4], [1, 3, 5], [1.0, 0.5, 0.0], start=[0, 2, 0],
                      length=[0, 5, 0], store=str(store.path), provenance={"source": "human"})
    digest = write_labels(tmp_path / "l.json", labels)
    back = read_labels(tmp_path / "l.json", store, SRC)
    assert back.digest() == digest == labels.digest()
    assert back.a.tolist() == [0, 2, 4] and back.label.tolist() == [1.0, 0.5, 0.0]
    assert back.start.tolist() == [0, 2, 0] and back.length.tolist() == [0, 5, 0]
    csv = read_labels(_csv(tmp_path / "l.csv", ["0,1,1", "2,3,0.5", "4,5,0"]), store, SRC)
    assert csv.a.tolist() == [0, 2, 4] and csv.label.tolist() == [1.0, 0.5, 0.0]


@pytest.mark.parametrize("rows,match", [
    (["0,9,1"], r"row 2: episode_b=9 is not an episode of .* \(it has 8 episodes, 0\.\.7\)"),
    (["0,6,1"], r"row 2: episode_b=6 is an episode of 'reach-v3', not of the source task "
                r"'window-open-v3'"),
    (["0,1,0.7"], r"row 2: label='0.7', expected one of 0 \(b is preferred\), 0.5"),
    (["0,1,yes"], r"label='yes', expected one of 0"),
    (["0,1,1", "2,2,1"], r"row 3: a pair of episode 2 with itself"),
    (["0,7,1"], r"episode_b=7 is incomplete"),
    (["0,-1,1"], r"episode_b='-1', expected an integer >= 0"),
    (["0,,1"], r"row 2: missing episode_b"),
])
def test_csv_label_refusals_are_named(tmp_path, store, rows, match):
    with pytest.raises(LabelError, match=match):
        read_labels(_csv(tmp_path / "l.csv", rows), store, SRC)


def test_json_label_refusals_are_named(tmp_path, store):
    with pytest.raises(LabelError, match="seed_a=999, but episode 0 .* has seed 100"):
        read_labels(_json(tmp_path / "a.json", [{"a": 0, "b": 1, "label": 1, "seed_a": 999}]),
                    store, SRC)
    with pytest.raises(LabelError, match="labels of task 'reach-v3', but they are used as "
                                         "labels of 'window-open-v3'"):
        read_labels(_json(tmp_path / "b.json", [{"a": 0, "b": 1, "label": 1}], task=OTHER),
                    store, SRC)
    with pytest.raises(LabelError, match=r"window start=8 length=5 ends after episode 0 "
                                         r"\(10 steps\)"):
        read_labels(_json(tmp_path / "c.json", [{"a": 0, "b": 1, "label": 1, "start": 8,
                                                 "length": 5}]), store, SRC)
    with pytest.raises(LabelError, match="schema_version=2, this robolearn reads 1; upgrade"):
        read_labels(_json(tmp_path / "d.json", [], schema_version=2), store, SRC)
    (tmp_path / "e.json").write_text("{not json")
    with pytest.raises(LabelError, match="not valid JSON"):
        read_labels(tmp_path / "e.json", store, SRC)
    with pytest.raises(LabelError, match="no such file"):
        read_labels(tmp_path / "missing.csv", store, SRC)
    with pytest.raises(LabelError, match=r"lacks \['label'\]"):
        read_labels(_csv(tmp_path / "f.csv", ["0,1"], header="episode_a,episode_b"), store, SRC)
    with pytest.raises(LabelError, match=r"unknown column\(s\) \['score'\]"):
        read_labels(_csv(tmp_path / "g.csv", ["0,1,1,3"],
                         header="episode_a,episode_b,label,score"), store, SRC)


def test_bad_pearl_options_are_refused():
    with pytest.raises(ConfigError, match="unknown task 'window-clos-v3'. Did you mean "
                                          "'window-close-v3'"):
        PearlConfig(source=SRC, target="window-clos-v3")
    with pytest.raises(ConfigError, match="source=target"):
        PearlConfig(source=SRC, target=SRC)
    with pytest.raises(ConfigError, match="missing required option target"):
        PearlConfig(source=SRC)
    with pytest.raises(ConfigError, match="labels='l.txt', expected `teacher` or a label file"):
        PearlConfig(source=SRC, target=OTHER, labels="l.txt")
    with pytest.raises(ConfigError, match="unknown gw solver 'exakt'"):
        cli.compose("pearl", [f"source={SRC}", f"target={OTHER}", "gw.solver=exakt"])
    with pytest.raises(ConfigError, match="pool.checkpoint_fraction=0.2 but no pool.checkpoints"):
        PoolConfig(checkpoint_fraction=0.2)


def test_pool_plan_splits_the_pool():
    plan = pool_plan(PoolConfig(size=24, noise=[0.0, 0.5, 0.9], random_fraction=0.2))
    assert sum(e["count"] for e in plan) == 24
    assert [e["count"] for e in plan] == [7, 6, 6, 5]  # experts share the rest, earlier first
    assert plan[-1]["kind"] == "random"


def _pool(task: str, quality: np.ndarray, seed: int, reverse: bool = False,
          geometry: np.ndarray | None = None) -> Pool:
    """Synthetic pool: trajectory k moves a 2-D point as far as geometry[k] (default its
    quality); a mirrored pool (reverse) moves the other way, so its geometry matches."""
    rng = np.random.default_rng(seed)
    n, steps = len(quality), 20
    t = np.linspace(0, 1, steps)[:, None]
    sign = -1.0 if reverse else 1.0
    geometry = quality if geometry is None else geometry
    obs = [np.concatenate([sign * g * t, g * t**2 + 1e-3 * rng.normal(size=(steps, 1))],
                          axis=1) for g in geometry]
    reward = [np.full(steps, q) for q in quality]
    return Pool(path=Path("/none"), task=task, episodes=np.arange(n) + 10, seeds=np.arange(n),
                obs=obs, action=[np.zeros((steps, 1)) for _ in range(n)], reward=reward,
                returns=np.array([r.sum() for r in reward]), success=quality > 0.8,
                length=np.full(n, steps), progress=np.asarray(quality, float), kind=["x"] * n)


def test_transfer_between_isometric_pools_recovers_the_order():
    q = np.random.default_rng(0).uniform(0, 1, 24)
    source = _pool("a", q, 0)
    target = _pool("b", np.random.default_rng(1).permutation(q), 1, reverse=True)
    from robolearn.align.labels import teacher_label_set
    from robolearn.align.pearl_config import TeacherConfig

    labels = teacher_label_set(source.returns, source.episodes, "a", TeacherConfig(pairs=120))
    result = transfer(source, target, labels, TransferConfig(features="obs"))
    j, l_, y, _ = result.transfer.pairs()
    truth = target.returns[j] > target.returns[l_]
    assert np.mean((y > 0.5) == truth) > 0.9
    assert result.orientation is not None and result.orientation.source_agreement > 0.9
    chosen = target_pairs(result, target, 10)
    assert len(chosen) == 10 and set(chosen.a) <= set(target.episodes)
    assert np.all(np.diff(chosen.confidence) <= 0)  # most confident first


def test_orientation_check_undoes_a_reflection():
    from robolearn.align.labels import teacher_label_set
    from robolearn.align.pearl import label_report
    from robolearn.align.pearl_config import TeacherConfig

    q = np.random.default_rng(0).uniform(0, 1, 24)
    source = _pool("a", q, 0)
    # the target's geometry is the source's, but its quality (returns, progress) is reflected:
    # GW matches by geometry, so the labels arrive inverted
    target = _pool("b", 1.0 - q, 1, geometry=q)
    labels = teacher_label_set(source.returns, source.episodes, "a", TeacherConfig(pairs=120))
    checked = transfer(source, target, labels, TransferConfig(orientation="check", fused=False))
    assert checked.orientation.flipped and not checked.flipped
    assert label_report(checked, target)["accuracy"] < 0.1
    fixed = transfer(source, target, labels, TransferConfig(orientation="auto", fused=False))
    assert fixed.flipped and label_report(fixed, target)["accuracy"] > 0.9
    # the default, fused GW, is pulled the right way by its task-agnostic term in the first place
    fused = transfer(source, target, labels, TransferConfig(orientation="check"))
    assert not fused.orientation.flipped and label_report(fused, target)["accuracy"] > 0.9


def test_episode_weights_filter_and_weight():
    pool = _pool("a", np.linspace(0, 1, 10), 0)  # store episodes 10..19 of a 25-episode store
    learned = np.arange(10.0)
    w = episode_weights(learned, pool, 25, "filter", keep_fraction=0.3)
    assert w.shape == (25,) and np.flatnonzero(w).tolist() == [17, 18, 19]
    w = episode_weights(learned, pool, 25, "weight", temperature=0.5)
    assert np.all(np.diff(w[10:20]) > 0) and w[:10].sum() == 0
    assert np.isclose(w[10:20].mean(), 1.0)


def test_segments_cut_windows_and_share_whole_trajectories():
    pool = _pool("a", np.linspace(0, 1, 4), 0)
    labels = LabelSet("a", [10, 10, 12], [11, 11, 13], [1, 1, 0], start=[0, 0, 5],
                      length=[0, 0, 6])
    x, mask, ia, ib = segments(pool, labels)
    assert ia.tolist() == [0, 0, 2] and ib.tolist() == [1, 1, 3]  # repeated pairs share inputs
    assert mask.sum(1).tolist() == [20, 20, 6, 6]
    assert np.allclose(x[2, :6, :2], pool.obs[2][5:11])


def test_align_hook_pairs_by_an_external_score():
    from robolearn.align.config import AlignConfig
    from robolearn.align.loop import score_and_pair
    from robolearn.rollout import EpisodeSpec, Trajectory

    def traj(group):
        steps = {"obs": np.zeros((5, 39), np.float32), "action": np.zeros((5, 4), np.float32)}
        return Trajectory(EpisodeSpec("reach-v3", group, group), "p", False, None, 5, 0.0,
                          steps=steps)

    groups = [[traj(0), traj(0), traj(0)], [traj(1), traj(1)]]
    cfg = AlignConfig(checkpoint="x", min_margin=0.5)
    scores, pairs = score_and_pair(cfg, groups, lambda flat: np.array([0.0, 2.0, 1.0, 3.0, 2.9]))
    assert [(p.chosen, p.rejected) for p in pairs] == [(1, 0)]  # group 1's margin is too small
    assert scores.keys == ["external"]
    with pytest.raises(ValueError, match="score_fn returned"):
        score_and_pair(cfg, groups, lambda flat: np.zeros(2))


@pytest.mark.slow
def test_pearl_end_to_end_gives_a_checkpoint_that_loads_and_evaluates(tmp_path):
    import robolearn
    from robolearn.evaluate import evaluate_agent

    out = tmp_path / "pearl"
    args = [f"out={out}", f"run_dir={tmp_path}/r", "ray.num_workers=0", "improve.steps=10",
            "eval_episodes=1", "pool.size=8", "pool.horizon=30", "teacher.pairs=12"]
    summary = cli.run("pearl", args, preset="debug")
    state = json.loads((out / "pearl.json").read_text())
    assert set(state) >= {"pools", "labels", "transfer", "reward", "improve"}
    assert state["labels"]["digest"] == json.loads(
        (out / "labels" / "source.json").read_text())["digest"]
    assert state["transfer"]["pairs_used"] > 0 and (out / "labels" / "target.json").exists()
    assert (out / "reward" / "transferred" / "model.safetensors").exists()
    policy = robolearn.load_policy(out)
    assert policy.tasks == ["window-close-v3"] if hasattr(policy, "tasks") else True
    result = evaluate_agent(policy, "MT1:window-close-v3", episodes_per_task=1, num_envs=1,
                            horizon=20, progress=False)
    assert len(result.episodes) == 1
    mtime = (out / "improve" / "transferred" / "checkpoint").stat().st_mtime
    again = cli.run("pearl", args, preset="debug")  # resumes: nothing is trained again
    assert again["improve"]["transferred"]["checkpoint"] == summary["improve"]["transferred"][
        "checkpoint"]
    assert (out / "improve" / "transferred" / "checkpoint").stat().st_mtime == mtime
    with pytest.raises(Exception, match="other settings"):
        cli.run("pearl", [*args, "gw.fused=false"], preset="debug")


def test_reward_score_fn_scores_rollouts_as_the_pool_is_scored():
    from robolearn.align.labels import teacher_label_set
    from robolearn.align.pearl import fit_reward, learned_returns, reward_score_fn
    from robolearn.align.pearl_config import RewardConfig, TeacherConfig
    from robolearn.rollout import EpisodeSpec, Trajectory

    pool = _pool("a", np.linspace(0, 1, 8), 0)
    labels = teacher_label_set(pool.returns, pool.episodes, "a", TeacherConfig(pairs=20))
    model, _ = fit_reward(pool, labels, RewardConfig(kind="point", epochs=2, hidden_dim=8),
                          stride=2)
    reference = learned_returns(model, pool, 2)
    score = reward_score_fn(model, reference, stride=2)
    trajs = [Trajectory(EpisodeSpec("a", k, k), "p", False, None, 20, 0.0,
                        steps={"obs": pool.obs[k], "action": pool.action[k]}) for k in range(8)]
    expected = (reference - reference.mean()) / reference.std()
    assert np.allclose(score(trajs), expected, atol=1e-5)  # standardised by the pool
    assert score.describe["score"] == "pearl learned reward"
