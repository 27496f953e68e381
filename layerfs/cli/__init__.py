"""``layerfs``: the command line, one module per group of commands: ``mounting``
(mount, umount, status, with ``daemon`` for the background), ``upkeep``
(purge-uploads, fsck, gc), ``space`` (du, prune), ``inspecting`` (inspect) and
``images`` (import, export);
``common`` holds the group and what the commands share."""

from . import (  # noqa: F401 - each registers its commands
    images,
    inspecting,
    mounting,
    space,
    upkeep,
)
from .common import cli, main

__all__ = ["cli", "main"]
