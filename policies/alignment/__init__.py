"""policies.alignment: the tensor/array maths of preference alignment (no loops, no envs).

- GRAPE (Zhang et al. 2024) for a flow-matching policy: the trajectory-wise Diffusion-DPO
  loss (`tpo`), stage-wise trajectory costs and scores from rollout records (`scoring`), and
  best-vs-worst preference pairs within a group (`pairs`).
- PEARL (Liu et al., ICML 2024): Gromov–Wasserstein preference transfer across tasks (`gw`),
  Bradley–Terry / robust (Gaussian) reward models (`reward`), a scripted teacher (`teacher`).

The loops that use them (rollouts, `robolearn align`) live in `robolearn.align`. Like the rest
of `policies`, this package sees arrays and tensors only. `gw` needs POT (`pip install pot`),
imported when a coupling is computed.
"""

from policies.alignment.gw import (
    Coupling,
    Orientation,
    Transfer,
    distance_matrix,
    distance_progress,
    feature_cost,
    gw_coupling,
    label_accuracy,
    normalize_pool,
    orientation_check,
    pair_matrices,
    plan_concentration,
    step_features,
    task_agnostic_features,
    transfer_labels,
)
from policies.alignment.pairs import PreferencePair, make_pairs
from policies.alignment.reward import (
    FitResult,
    RewardModel,
    RewardModelConfig,
    fit,
    load_reward_model,
    predict_return,
    predict_reward,
    preference_loss,
    save_reward_model,
    segment_returns,
)
from policies.alignment.scoring import (
    COST_NAMES,
    PRESETS,
    STAGES,
    CostConfig,
    Scores,
    external_reward,
    group_scale,
    resolve_weights,
    score_trajectories,
    stage_bounds,
    trajectory_costs,
)
from policies.alignment.teacher import sample_pairs, teacher_labels
from policies.alignment.tpo import (
    TPOTerms,
    chunk_flow_losses,
    combined_loss,
    frozen_copy,
    median_chunk_count,
    pad_chunks,
    sample_shared_noise,
    tpo_loss,
    tpo_terms,
)

__all__ = [
    "COST_NAMES",
    "PRESETS",
    "STAGES",
    "CostConfig",
    "Coupling",
    "FitResult",
    "Orientation",
    "PreferencePair",
    "RewardModel",
    "RewardModelConfig",
    "Scores",
    "TPOTerms",
    "Transfer",
    "chunk_flow_losses",
    "combined_loss",
    "distance_matrix",
    "distance_progress",
    "external_reward",
    "feature_cost",
    "fit",
    "frozen_copy",
    "group_scale",
    "gw_coupling",
    "label_accuracy",
    "load_reward_model",
    "make_pairs",
    "median_chunk_count",
    "normalize_pool",
    "orientation_check",
    "pad_chunks",
    "pair_matrices",
    "plan_concentration",
    "predict_return",
    "predict_reward",
    "preference_loss",
    "resolve_weights",
    "sample_pairs",
    "sample_shared_noise",
    "save_reward_model",
    "score_trajectories",
    "segment_returns",
    "stage_bounds",
    "step_features",
    "task_agnostic_features",
    "teacher_labels",
    "tpo_loss",
    "tpo_terms",
    "trajectory_costs",
    "transfer_labels",
]
