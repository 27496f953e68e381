"""Named points where a test kills the daemon on purpose (``kill -9`` of itself), to
check what every step of a commit leaves behind (layerfs/storage/UPLOADS.md).

``LAYERFS_CRASH_AT=<point>`` in the environment makes the process SIGKILL itself
the first time it reaches that point; unset, a point costs one dictionary look-up.
"""

from __future__ import annotations

import os
import signal

ENV = "LAYERFS_CRASH_AT"
POINTS = (
    "finish:before-move",  # validated, the state at the final size stored
    "move:copy-under-way",  # S3: a part of the blob's server-side copy stored
    "move:copied",  # the blob is whole; the upload's data not yet deleted
    "finish:before-link",  # moved; no link yet
    "finish:before-cleanup",  # linked; the upload directory still there
)


def crash_point(name: str) -> None:
    """Die here, as ``kill -9`` would, when the environment names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
