"""Evaluation: the Meta-World protocol, held-out goal seeds, reports and videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

import robolearn.runtime
import sim
from robolearn.cli import compose
from robolearn.cluster import RayConfig
from robolearn.data import EpisodeStore
from robolearn.evaluate import (
    EvaluateConfig,
    ExpertAgent,
    check_heldout_seeds,
    eval_seeds,
    evaluate_agent,
    run_evaluate,
)
from robolearn.rollout import EpisodeSpec, RolloutOptions, episode_seed, run_batch
from tests.support import make_episode

SUITE = "MT1:reach-v3"
TASK = "reach-v3"


class RandomAgent:
    """Uniform random actions; it should (almost) never reach the goal."""

    tasks = (TASK,)

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.resets = 0
        self.batch_sizes: set[int] = set()

    def reset(self) -> None:
        self.resets += 1
        self.rng = np.random.default_rng(self.seed + self.resets)

    def act(self, obs: np.ndarray, task: str) -> np.ndarray:
        assert obs.ndim == 2 and obs.shape[1] == sim.OBS_DIM and task == TASK
        self.batch_sizes.add(obs.shape[0])
        return self.rng.uniform(-1, 1, size=(obs.shape[0], sim.ACTION_DIM)).astype(np.float32)


def _evaluate(agent, **kw):
    kw = {"episodes_per_task": 3, "num_envs": 3, "progress": False, **kw}
    return evaluate_agent(agent, SUITE, **kw)


def test_expert_solves_reach_with_seeds_from_episode_seed():
    result = _evaluate(ExpertAgent(), seed=1000)
    assert result.success_by_task == {TASK: 1.0} and result.mean_success == 1.0
    assert result.seeds[TASK] == [episode_seed(1000, TASK, i) for i in range(3)]
    assert all(r.steps < sim.HORIZON for r in result.episodes)


def test_episodes_match_collections_rollout_of_the_same_goal():
    result = _evaluate(ExpertAgent(), seed=5)
    env, expert = sim.make_env(TASK), ExpertAgent(clean_obs=False)
    for r in result.episodes:
        (traj,) = run_batch(expert, [env], [EpisodeSpec(TASK, r.episode, r.seed)],
                            RolloutOptions(record="steps"))
        assert (r.success, r.steps) == (traj.success, len(traj.steps["action"]))
        assert r.episode_return == pytest.approx(float(traj.steps["reward"].sum()), rel=1e-5)


def test_random_agent_fails_reach():
    agent = RandomAgent()
    result = _evaluate(agent)
    assert result.success_by_task[TASK] < 0.5
    assert agent.batch_sizes == {3} and agent.resets == 1
    assert all(r.steps == sim.HORIZON for r in result.episodes if not r.success)


def test_batching_and_reruns_do_not_change_the_result():
    one = _evaluate(ExpertAgent(), num_envs=1).to_dict()
    batched = _evaluate(ExpertAgent(), num_envs=2).to_dict()
    again = _evaluate(ExpertAgent(), num_envs=2).to_dict()
    assert one["episodes"] == batched["episodes"] == again["episodes"]


def test_expert_reads_the_hidden_goal_in_ml_style_envs():
    hidden = sim.Suite("hidden-reach", (TASK,), (TASK,), goal_observable=False)
    result = evaluate_agent(ExpertAgent(), hidden, episodes_per_task=2, num_envs=2,
                            progress=False)
    assert result.success_by_task == {TASK: 1.0}


def test_wrong_action_shape_is_refused():
    class Flat(RandomAgent):
        def act(self, obs, task):
            return np.zeros(sim.ACTION_DIM)

    with pytest.raises(ValueError, match=r"shape \(4,\).*expected \(B, Da\) = \(3, 4\)"):
        _evaluate(Flat(), horizon=2)


def test_a_task_the_agent_does_not_know_is_refused():
    with pytest.raises(ValueError, match="cannot act on.*push-v3"):
        evaluate_agent(RandomAgent(), "MT1:push-v3", episodes_per_task=1, progress=False)


def test_module_horizon_matches_sim():
    from robolearn.evaluate import evaluator

    assert evaluator.HORIZON == sim.HORIZON


def _store(path, task, seeds, collect_seed=0):
    s = EpisodeStore.create(path, sim.OBS_DIM, sim.ACTION_DIM, attrs={"collect_seed": collect_seed})
    for seed in seeds:
        s.add_episode(make_episode(seed, 3, sim.OBS_DIM, sim.ACTION_DIM), task=task, seed=seed)
    s.close()
    return path


def test_heldout_check_refuses_a_training_goal(tmp_path):
    seeds = eval_seeds(1000, [TASK], 3)
    store = _store(tmp_path / "demos.zarr", TASK, [episode_seed(0, TASK, 0), seeds[TASK][2]])
    with pytest.raises(ValueError, match="1 evaluation goal.*training episodes"):
        check_heldout_seeds(1000, seeds, dataset=store)


def test_heldout_check_passes_disjoint_goals_and_reads_collect_seed(tmp_path):
    seeds = eval_seeds(1000, [TASK], 3)
    # the same seed on another task is another goal
    store = _store(tmp_path / "demos.zarr", "push-v3", [seeds[TASK][0]], collect_seed=7)
    info = check_heldout_seeds(1000, seeds, dataset=store)
    assert info["collect_seed"] == 7 and info["seed_overlap_check"].startswith("passed")


def test_heldout_check_refuses_the_collect_seed():
    with pytest.raises(ValueError, match="equals the training data's collect seed"):
        check_heldout_seeds(0, eval_seeds(0, [TASK], 1), collect_seed=0)


def _cfg(tmp_path, **kw):
    return EvaluateConfig(**{"suite": SUITE, "episodes_per_task": 2, "num_envs": 2,
                             "out": str(tmp_path / "eval"), "ray": RayConfig(num_workers=0),
                             **kw})


def test_run_evaluate_writes_a_report_and_a_plot(tmp_path, capsys):
    report = run_evaluate(_cfg(tmp_path, checkpoint="expert"), tmp_path)
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["success_by_task"] == {TASK: 1.0} == report["success_by_task"]
    assert saved["eval_seed"] == 1000 and saved["summary"]["iqm_ci"] is None
    assert (tmp_path / "eval" / "success_by_task.png").stat().st_size > 1000
    assert "reach-v3" in capsys.readouterr().out


def test_run_evaluate_over_several_runs_reports_a_ci(tmp_path):
    report = run_evaluate(_cfg(tmp_path, checkpoints=["expert", "expert"]), tmp_path)
    assert report["summary"]["runs"] == 2 and report["summary"]["iqm_ci"] == [1.0, 1.0]


def test_run_evaluate_refuses_a_policy_trained_on_the_eval_goals(tmp_path, monkeypatch):
    store = _store(tmp_path / "demos.zarr", TASK, [episode_seed(1000, TASK, 1)])

    def load_policy(path, device="auto"):
        agent = RandomAgent()
        agent.train_info = {"dataset": str(store), "collect_seed": 0}
        return agent

    monkeypatch.setattr(robolearn.runtime, "load_policy", load_policy)
    with pytest.raises(ValueError, match="training episodes in"):
        run_evaluate(_cfg(tmp_path, checkpoint=str(tmp_path / "ckpt")), tmp_path)


def test_run_evaluate_needs_exactly_one_of_checkpoint_and_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint to evaluate"):
        run_evaluate(_cfg(tmp_path), tmp_path)
    with pytest.raises(ValueError, match="give one of them"):
        run_evaluate(_cfg(tmp_path, checkpoint="expert", checkpoints=["expert"]), tmp_path)


def test_composed_config_without_a_checkpoint_is_refused(tmp_path):
    cfg = compose("evaluate", [])
    with pytest.raises(ValueError, match="no checkpoint to evaluate"):
        run_evaluate(cfg, tmp_path)


def test_config_rejects_a_bad_split():
    with pytest.raises(ValueError, match="split='val'"):
        EvaluateConfig(checkpoint="expert", split="val")


@pytest.mark.slow
def test_video_is_a_readable_mp4(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    result = _evaluate(RandomAgent(), episodes_per_task=2, num_envs=2, horizon=8,
                       video_dir=tmp_path / "videos", video_size=128)
    assert result.videos == [str(tmp_path / "videos" / f"{TASK}_0.mp4")]
    frames = imageio.mimread(result.videos[0])
    assert len(frames) == 9 and frames[0].shape == (128, 128, 3)  # reset frame + 8 steps
