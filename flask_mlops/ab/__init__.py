"""A/B tests and gradual rollouts between model versions (no Flask here).

- `assign` — deterministic, sticky assignment (keyed hash → 10,000 buckets); imported by
  the request path, so this package's `__init__` imports nothing heavier.
- `summary` — per-variant sufficient statistics from logged outcomes (numpy).
- `stats` — Bayesian and frequentist comparison, power, SRM, the verdict (scipy, lazily).
- `guardrails` — error rate, p95 latency and accuracy limits against control.
- `rollout` — the staged-rollout state machine (`evaluate` → advance/hold/rollback/complete).
"""

from __future__ import annotations

from .assign import BUCKETS, CONTROL, TREATMENT, VARIANTS, Assigner, Assignment, new_salt

__all__ = ["BUCKETS", "CONTROL", "TREATMENT", "VARIANTS", "Assigner", "Assignment", "new_salt"]
