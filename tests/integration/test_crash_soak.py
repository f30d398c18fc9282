"""The embedding process does not leak: a short `make soak` (tests/soak/soak.py) in a fresh
interpreter — containers run, created and deleted, and refused on purpose, through the
library — ends with the fds, threads and children it had after the first 10 runs, and its
RSS within 2 MiB. `make soak` runs 1000."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO, need_root


def test_library_soak_leaks_nothing(rootfs_template):
    need_root()
    r = subprocess.run([sys.executable, os.path.join(REPO, "tests", "soak", "soak.py"),
                        "--runs", "80"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "soak: no leak" in r.stdout and "refused on purpose" in r.stdout, r.stdout
