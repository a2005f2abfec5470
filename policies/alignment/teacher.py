"""A scripted preference teacher for experiments: Bradley–Terry on known returns (numpy, seeded).

The label of a pair (a, b) with true returns R_a, R_b (e.g. the pinned Meta-World reward
summed over each segment) follows the B-Pref conventions (Lee et al. 2021):

    "hard"    y = 1[R_a > R_b]  (0.5 when |R_a − R_b| <= equal_margin)   a perfectly rational
    "soft"    y = σ((R_a − R_b) / temperature)                           the BT probability
    "sample"  y ~ Bernoulli(σ((R_a − R_b) / temperature))                a stochastic teacher

then, with probability `flip_rate`, y ← 1 − y (a mistake rate).
"""

from __future__ import annotations

import numpy as np

TEACHER_MODES = ("hard", "soft", "sample")


def teacher_labels(
    returns_a: np.ndarray,
    returns_b: np.ndarray,
    *,
    mode: str = "hard",
    temperature: float = 1.0,
    flip_rate: float = 0.0,
    equal_margin: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Preference labels y = P(a ≻ b) in [0, 1] for P pairs of true returns.

    Args:
        returns_a, returns_b: (P,) true returns of each pair's two segments.
        mode: "hard", "soft" or "sample" (module docstring).
        temperature: BT temperature of "soft"/"sample" (> 0; larger is noisier).
        flip_rate: probability in [0, 1] of inverting a label.
        equal_margin: "hard" only: pairs closer than this get 0.5 (no preference).
        seed: seeds the sampling and the flips.

    Returns:
        (P,) float64 labels.

    Example:
        >>> teacher_labels(np.array([3.0, 1.0, 2.0]), np.array([1.0, 3.0, 2.0]))
        array([1. , 0. , 0.5])
    """
    ra = np.asarray(returns_a, dtype=np.float64).reshape(-1)
    rb = np.asarray(returns_b, dtype=np.float64).reshape(-1)
    if ra.shape != rb.shape:
        raise ValueError(f"Got returns_a {ra.shape} and returns_b {rb.shape}, expected (P,) each")
    if not (np.isfinite(ra).all() and np.isfinite(rb).all()):
        raise ValueError("Got non-finite returns, expected finite values")
    if mode not in TEACHER_MODES:
        from policies.backbones import unknown_name_message

        raise ValueError(unknown_name_message("teacher mode", mode, TEACHER_MODES))
    if not temperature > 0:
        raise ValueError(f"Got temperature={temperature}, expected > 0")
    if not 0.0 <= flip_rate <= 1.0:
        raise ValueError(f"Got flip_rate={flip_rate}, expected 0 <= flip_rate <= 1")
    if not equal_margin >= 0:
        raise ValueError(f"Got equal_margin={equal_margin}, expected >= 0")
    rng = np.random.default_rng(seed)
    diff = ra - rb
    if mode == "hard":
        y = np.where(np.abs(diff) <= equal_margin, 0.5, (diff > 0).astype(np.float64))
    else:
        prob = 1.0 / (1.0 + np.exp(-np.clip(diff / temperature, -500.0, 500.0)))
        y = prob if mode == "soft" else (rng.random(ra.shape) < prob).astype(np.float64)
    flip = rng.random(ra.shape) < flip_rate
    return np.where(flip, 1.0 - y, y)


def sample_pairs(n: int, num_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`num_pairs` random pairs (a ≠ b) of n items, seeded: (index_a (P,), index_b (P,))."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"Got n={n!r}, expected an int >= 2")
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"Got num_pairs={num_pairs!r}, expected an int >= 1")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, num_pairs)
    b = (a + rng.integers(1, n, num_pairs)) % n  # uniform over the n − 1 others
    return a, b
