"""`make run`'s development credentials: an admin token and a secret key, private to their owner.

`python -m example_app.devsecrets <instance>` makes sure `<instance>/dev-token` (the admin
bearer token, also the dashboard login) and `<instance>/dev-secret-key` (`MLOPS_SECRET_KEY`:
signs session cookies) exist with mode 0600, created that way (`os.open(..., 0o600)`, never
readable by others for a moment) and tightened if an older run left them readable. Existing
values are kept, so a restart keeps the dashboard sessions and the token you copied.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

FILES = {"dev-token": 24, "dev-secret-key": 32}  # name -> random bytes


def ensure(path: Path, nbytes: int) -> str:
    """The value in `path`, created (mode 0600) with a new random one if missing or empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    value = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "instance")
    for name, nbytes in FILES.items():
        ensure(folder / name, nbytes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
