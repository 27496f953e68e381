"""The child processes a test started, found through /proc."""

from __future__ import annotations

import os
from pathlib import Path


def living_children(script: bytes) -> list[int]:
    """This process's living children whose command line holds ``script``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and script in command:
            state = stat.rsplit(")", 1)[1].split()[0]
            if state != "Z":
                found.append(int(entry.name))
    return found
