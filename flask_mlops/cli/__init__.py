"""`flask mlops ...` commands: thin adapters over the same service functions the API calls.

Importing the package adds every area's commands to `group.cli`.
"""

from __future__ import annotations

from flask.cli import AppGroup

# training: train, versions, init-db; experiments: experiment, rollout; models: promote, rollback,
# archive, history, retrain; monitoring: drift, report; ops: scheduler, jobs, retention; logs: ship, pull; demo
from . import demo, engines, experiments, logs, models, monitoring, ops, training  # noqa: F401  (add their commands)
from .group import cli


def load_commands() -> AppGroup:
    """The `flask mlops` group with every command."""
    return cli


__all__ = ["cli", "load_commands"]
