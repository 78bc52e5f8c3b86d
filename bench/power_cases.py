"""The simulated windows of bench/drift_power.py: pure NumPy, so Evidently's venv draws the same ones.

Four features: ``x`` normal (mean 100, sd 20, like a lab value), ``z`` zero-inflated
(97 % zeros, the rest log-normal around 20), ``c5`` five categories (40/25/15/10/10 %)
and ``c20`` twenty categories (shares falling by 15 % each). Every window is drawn from
a seed made of (reference size, reference number, window size, repetition, case), so two
processes that ask for the same window get the same values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FEATURES = ("x", "z", "c5", "c20")
NUMERIC = ("x", "z")
C5 = np.array(list("abcde"), dtype=object)
C5_P = np.array([0.40, 0.25, 0.15, 0.10, 0.10])
C20 = np.array([f"k{i:02d}" for i in range(20)], dtype=object)
C20_P = 0.85 ** np.arange(20) / np.sum(0.85 ** np.arange(20))
REFERENCE_SIZES = (600, 20_000)
WINDOW_SIZES = (200, 1_000, 10_000, 100_000)


def draw(feature: str, n: int, rng: np.random.Generator, *, moved: bool = False) -> np.ndarray:
    """`n` values of `feature` with no change (or, for c5, with 10 points moved from a to d)."""
    if feature == "x":
        return rng.normal(100.0, 20.0, n)
    if feature == "z":
        return np.where(rng.uniform(size=n) < 0.97, 0.0, rng.lognormal(3.0, 0.5, n))
    if feature == "c5":
        p = C5_P + (np.array([-0.10, 0.0, 0.0, 0.10, 0.0]) if moved else 0.0)
        return C5[rng.choice(5, n, p=p)]
    if feature == "c20":
        return C20[rng.choice(20, n, p=C20_P)]
    raise KeyError(feature)


def _share(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    return rng.uniform(size=n) < share


def _mean_shift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x + 0.3 * 20.0


def _variance(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (x - 100.0) * 1.5 + 100.0


def _missing(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(_share(rng, x.size, 0.30), np.nan, x)


def _unit_error(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(_share(rng, x.size, 0.05), x * 18.0, x)


def _far_tail(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.where(_share(rng, x.size, 0.02), x * 10.0, x)


def _zero_tail(z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return z * 2.7


#: case -> (feature, change applied to a no-change window, description)
CASES: dict[str, tuple[str, Callable[[np.ndarray, np.random.Generator], np.ndarray] | None, str]] = {
    "mean_shift": ("x", _mean_shift, "mean +0.3 sd"),
    "variance": ("x", _variance, "spread x1.5"),
    "missing_30": ("x", _missing, "30 % missing"),
    "unit_error": ("x", _unit_error, "5 % of values x18"),
    "far_tail": ("x", _far_tail, "2 % of values x10"),
    "category_move": ("c5", None, "10 points from a to d"),
    "zero_tail": ("z", _zero_tail, "non-zeros x2.7 (97 % zeros)"),
}
CASE_ORDER = ("none", *CASES)


def seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


def reference(n_ref: int, ref_index: int) -> dict[str, np.ndarray]:
    rng = seed(1, n_ref, ref_index)
    return {f: draw(f, n_ref, rng) for f in FEATURES}


def no_change_window(n_ref: int, ref_index: int, size: int, rep: int) -> dict[str, np.ndarray]:
    rng = seed(2, n_ref, ref_index, size, rep)
    return {f: draw(f, size, rng) for f in FEATURES}


def case_window(case: str, n_ref: int, ref_index: int, size: int, rep: int) -> tuple[str, np.ndarray]:
    """(feature, values) of one changed window."""
    feature, change, _ = CASES[case]
    rng = seed(3, n_ref, ref_index, size, rep, CASE_ORDER.index(case))
    if change is None:
        return feature, draw(feature, size, rng, moved=True)
    return feature, change(draw(feature, size, rng), rng)


def plan(quick: bool) -> dict[int, tuple[int, int]]:
    """window size -> (references, windows per reference); quick: a smoke test's sizes."""
    if quick:
        return {200: (1, 2), 1_000: (1, 2), 10_000: (1, 1), 100_000: (1, 1)}
    return {200: (20, 10), 1_000: (20, 10), 10_000: (10, 8), 100_000: (10, 2)}
