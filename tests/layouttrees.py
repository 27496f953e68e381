"""Stores on disk made from drawn layout paths, with entries where they should not be."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path


def build_tree(
    base: Path,
    files: Iterable[str],
    odd: Iterable[tuple[str, int, str]] = (),
    bare: Iterable[str] = (),
) -> Path:
    """``base/store`` holding each of ``files`` (its own path as its bytes), unless a
    file already stands where it needs a directory; the directory of each of ``bare``
    without its file; and for each ``(path, at, kind)`` of ``odd``, at component
    ``at`` of ``path`` (modulo its length), a symbolic link to ``base`` (``l``), a
    FIFO (``f``) or an empty directory (``d``), where nothing is yet."""
    root = base / "store"
    for path in files:
        target = root / path.lstrip("/")
        if target.exists() or any(p.is_file() for p in target.parents):
            continue  # a file where this path needs a directory: skip it
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.encode())
    for path in bare:  # a link directory without its link, a blob's without data
        with contextlib.suppress(OSError):
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    for path, at, kind in odd:
        parts = path.strip("/").split("/")
        where = root.joinpath(*parts[: 1 + at % len(parts)])
        if where.exists() or where.is_symlink() or any(p.is_file() for p in where.parents):
            continue
        where.parent.mkdir(parents=True, exist_ok=True)
        if kind == "l":
            where.symlink_to(base)
        elif kind == "f":
            os.mkfifo(where)
        else:
            where.mkdir()
    return root
