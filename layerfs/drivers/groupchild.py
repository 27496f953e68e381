"""The child process of ``groupprocess.py``: a store's directories walked and the
small files below them read, for a whole-store pass.

Its input is one ``marshal``'d request, ``(tops, refused, name, wanted)``: each top
is walked as ``beneath.walk_tree`` walks, into every directory whose path the
regular expression ``refused`` does not find; then, in each directory listed and
not entered, the file ``name`` whose path ``wanted`` finds is read, as
``Beneath.read_file`` reads. Its output is one frame per top, in order (so that it
holds one top's at a time): a 4-byte length and a ``marshal`` of ``("ok",
listings, paths read, each one's bytes or why not)``, ``("unopened", why)`` for a
top it could not open, or ``("fail", why)`` for one it could not walk, which ends
the child. A why is ``(errno, strerror, tag, kind)``, tag ``symlink``,
``notregular``, ``isdir`` or empty: what the parent needs to raise the error its
threads would have raised.

Run as a script by its path, beside ``beneath.py``, so that it loads nothing of the
package but that file; no module in this directory may take the name of a standard
one it imports."""

from __future__ import annotations

import marshal
import os
import re
import sys
from collections.abc import Callable

from beneath import Beneath, Listed, NotRegularError, SymlinkError, walk_tree

Why = tuple[int, str, str, str]


def why(exc: OSError) -> Why:
    if isinstance(exc, SymlinkError):
        tag, kind = "symlink", ""
    elif isinstance(exc, NotRegularError):
        tag, kind = "notregular", exc.kind
    elif isinstance(exc, IsADirectoryError):
        tag, kind = "isdir", ""
    else:
        tag, kind = "", ""
    return exc.errno or 0, exc.strerror or str(exc), tag, kind


def read_top(
    beneath: Beneath,
    root: int,
    top: str,
    descend: Callable[[str], bool],
    name: str,
    wanted: Callable[[str], object],
) -> tuple:
    try:
        fd = beneath.open_dir(top.strip("/").split("/"))
    except OSError as exc:
        return "unopened", why(exc)
    found: list[Listed] = []
    left: list[str] = []
    try:
        walk_tree(fd, top, descend, found.append, left)
    except OSError as exc:
        return "fail", why(exc)
    finally:
        os.close(fd)
    paths = [path for path in (f"{d}/{name}" for d in left) if wanted(path)]
    contents: list[bytes | Why] = []
    for path in paths:
        try:
            contents.append(beneath.read_file(path, root))
        except OSError as exc:
            contents.append(why(exc))
    return "ok", found, paths, contents


def serve(root_path: str, how: str) -> None:
    beneath = Beneath(root_path, use_openat2=how == "openat2")
    root = beneath.open_root()  # a root that cannot be opened ends the child at once
    tops, refused, name, wanted = marshal.loads(sys.stdin.buffer.read())
    refuses, wants = re.compile(refused).search, re.compile(wanted).search
    sink = sys.stdout.buffer
    for top in tops:
        answer = read_top(beneath, root, top, lambda p: refuses(p) is None, name, wants)
        data = marshal.dumps(answer)
        sink.write(len(data).to_bytes(4, "little"))
        sink.write(data)
        sink.flush()
        if answer[0] == "fail":
            break
    os.close(root)


if __name__ == "__main__":
    serve(*sys.argv[1:3])
