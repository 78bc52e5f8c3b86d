"""WSGI app for tests/test_faults.py: the example app with the artifact-swap hook installed.

With MLOPS_TEST_SWAP_WITH (a file) and MLOPS_TEST_SWAP_VERSION set, every time a worker
has read and checked the cached artifact of that version, and before it unpickles, the
file on disk is replaced by MLOPS_TEST_SWAP_WITH: the race between the check and the load
made deterministic; removing that file ends the swapping. Never imported by the test process itself.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from example_app.wsgi import app
from flask_mlops.store import artifacts


def _swap(path: Path) -> None:
    evil = os.environ["MLOPS_TEST_SWAP_WITH"]
    if path.parent.name == os.environ.get("MLOPS_TEST_SWAP_VERSION") and os.path.exists(evil):
        shutil.copyfile(evil, path)


if os.environ.get("MLOPS_TEST_SWAP_WITH"):
    artifacts.after_read = _swap

__all__ = ["app"]
