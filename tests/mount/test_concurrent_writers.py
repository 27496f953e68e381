"""Two programs writing one upload at once, on a kernel FUSE mount (README,
"Concurrent writers"): one writer at a time, nothing written after a finish reaches
the blob, and the daemon always unmounts. tests/view/test_interleavings.py finds such
cases without the kernel; these are the ones found by hand, kept."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ..conftest import Store
from ..mounts import Mount, is_mounted
from ..registry import signed_upload_location
from ..stores import V2
from .test_crash import check_store

REPO = "repositories/conc/test"
MIB = 1 << 20


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def uploads(mount: Mount) -> Path:
    (mount.mountpoint / REPO).mkdir(parents=True)  # shows _uploads at once
    return mount.mountpoint / REPO / "_uploads"


@pytest.mark.parametrize("redirect", [">", ">>"])
def test_two_shells_writing_one_upload(
    store: Store, mount: Mount, uploads: Path, tmp_path: Path, redirect: str
) -> None:
    """``cat a > x & cat b > x``: the upload holds one program's bytes, whole, and a
    finish under a digest other than its content's is refused; the second writer
    gets EBUSY while the first has bytes in flight."""
    size = 6 * MIB if store.kind == "filesystem" else 12 * MIB
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(os.urandom(size))
    b.write_bytes(os.urandom(size))
    contents = {a.read_bytes(), b.read_bytes()}
    for round_ in range(6):
        target = uploads / f"x{round_}"
        target.write_bytes(b"")
        script = f"cat {a} {redirect} {target} & cat {b} {redirect} {target}; wait"
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
        assert not result.stderr or "busy" in result.stderr, result.stderr
        held = target.read_bytes()
        if redirect == ">":
            assert held in contents, f"round {round_}: neither file ({len(held)} bytes)"
        else:  # appends: one after the other, never interleaved
            assert held in contents | {x + y for x in contents for y in contents}, round_
        wrong = (contents - {held}).pop() if held in contents else a.read_bytes()
        result = subprocess.run(
            ["mv", str(target), str(uploads / digest(wrong))], capture_output=True, text=True
        )
        assert result.returncode != 0, f"round {round_}: a finish named bytes it does not hold"
        os.rename(target, uploads / digest(held))
    check_store(store)
    mount.stop()
    assert not is_mounted(mount.mountpoint)


WRITER_AND_READER = """
import os, sys, threading
path = sys.argv[1]
fds = {}
def opener(kind, flags):
    fds[kind] = os.open(path, flags)
threads = [threading.Thread(target=opener, args=("w", os.O_WRONLY | os.O_APPEND)),
           threading.Thread(target=opener, args=("r", os.O_RDONLY))]
for t in threads: t.start()
for t in threads: t.join()
os.close(fds["r"])
os.write(fds["w"], b"a" * (7 << 20))
print("written", flush=True)
sys.stdin.readline()                 # the test finishes the upload now
try:
    os.write(fds["w"], b"b" * (2 << 20))
    print("write: ok", flush=True)
except OSError as exc:
    print("write:", exc.errno, flush=True)
try:
    os.close(fds["w"])
    print("close: ok", flush=True)
except OSError as exc:
    print("close:", exc.errno, flush=True)
"""


def test_a_write_after_the_finish_never_reaches_the_blob(
    store: Store, mount: Mount, uploads: Path
) -> None:
    """A writer and a reader open the upload together; the upload is finished while
    the writer is open; the writer's next write and close get ESTALE, the blob keeps
    exactly the bytes it was named for, and the daemon unmounts."""
    for round_ in range(6):
        target = uploads / f"w{round_}"
        target.write_bytes(b"")
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER_AND_READER, str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "written\n"
        name = digest(b"a" * (7 << 20))
        os.rename(target, uploads / name)
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=60)
        assert out.splitlines() == [f"write: {errno.ESTALE}", f"close: {errno.ESTALE}"], out
        blob = mount.mountpoint / f"blobs/sha256/{name[7:9]}/{name[7:]}/data"
        assert blob.stat().st_size == 7 << 20
    check_store(store)
    mount.stop()
    assert not is_mounted(mount.mountpoint), "the daemon did not unmount"


def test_a_second_writer_gets_ebusy_with_the_reason(mount: Mount, uploads: Path) -> None:
    """While one program has written and not closed, another's open for writing is
    EBUSY, and user.layerfs.error says why; after the first closes, the second may."""
    target = uploads / "x"
    first = os.open(target, os.O_WRONLY | os.O_CREAT)
    os.write(first, b"first")
    with pytest.raises(OSError) as refused:
        os.open(target, os.O_WRONLY | os.O_APPEND)
    assert refused.value.errno == errno.EBUSY
    assert b"EBUSY" in os.getxattr(target, "user.layerfs.error")
    reader = os.open(target, os.O_RDONLY)  # readers are never refused
    os.close(first)
    second = os.open(target, os.O_WRONLY | os.O_APPEND)
    os.write(second, b" second")
    os.close(second)
    assert os.read(reader, 100) == b"first second"
    os.close(reader)


def test_opens_racing_in_threads_share_one_writer(mount: Mount, uploads: Path) -> None:
    """Eight threads open one upload for appending at the same moment: each either
    writes its bytes whole (one after another's close) or gets EBUSY at its open."""
    target = uploads / "x"
    target.write_bytes(b"")
    barrier = threading.Barrier(8)
    results: dict[int, str] = {}

    def write(n: int) -> None:
        barrier.wait()
        try:
            fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            results[n] = errno.errorcode[exc.errno]
            return
        try:
            os.write(fd, bytes([65 + n]) * MIB)
            results[n] = "wrote"
        except OSError as exc:
            results[n] = errno.errorcode[exc.errno]
        finally:
            os.close(fd)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    held = target.read_bytes()
    winners = [n for n, r in results.items() if r == "wrote"]
    assert winners and set(results.values()) <= {"wrote", "EBUSY"}, results
    in_order = sorted(winners, key=lambda n: held.index(bytes([65 + n])))
    assert held == b"".join(bytes([65 + n]) * MIB for n in in_order)


def one_after_the_other(held: bytes, a: bytes, b: bytes) -> bool:
    """Whether ``held`` is some of one writer's bytes followed by some of the other's
    (either may have been cut short by its error): never interleaved."""
    for first, second in ((a, b), (b, a)):
        common = len(os.path.commonprefix([held, first]))
        # the switch may lie a few bytes before ``common`` (the second's first bytes
        # can equal the first's next ones by chance)
        for switch in range(common, max(common - 16, -1), -1):
            if second.startswith(held[switch:]):
                return True
    return False


def test_the_interleaving_check_refuses_mixed_bytes() -> None:
    a, b = os.urandom(1000), os.urandom(1000)
    assert one_after_the_other(a[:300] + b, a, b) and one_after_the_other(b + a[:5], a, b)
    assert not one_after_the_other(a[:300] + b[:200] + a[300:], a, b)
    assert not one_after_the_other(b[:10] + a[:10], a, b[5:])


def test_two_mounts_appending_to_one_upload(store: Store, tmp_path: Path) -> None:
    """``cat a >> m1/x & cat b >> m2/x`` through two mounts of one store: the bytes of
    the two never interleave (the later writer gets an error instead), and the finish
    names exactly what is stored."""
    mounts = [
        Mount(store.spec, tmp_path / f"m{i}", tmp_path / f"log{i}", env=store.env).start()
        for i in (1, 2)
    ]
    try:
        (mounts[0].mountpoint / REPO).mkdir(parents=True)
        a, b = os.urandom(4 * MIB), os.urandom(4 * MIB)
        (tmp_path / "a").write_bytes(a)
        (tmp_path / "b").write_bytes(b)
        for round_ in range(4):
            name = f"x{round_}"
            (mounts[0].mountpoint / REPO / "_uploads" / name).write_bytes(b"")
            time.sleep(1.1)  # the second mount lists the upload after its directory timeout
            ups = [m.mountpoint / REPO / "_uploads" / name for m in mounts]
            script = f"cat {tmp_path}/a >> {ups[0]} & cat {tmp_path}/b >> {ups[1]}; wait"
            subprocess.run(["bash", "-c", script], capture_output=True, text=True)
            # what the store holds, read once both writers' sessions ended (a mount
            # that wrote keeps its own idea of the end while its handle lives)
            time.sleep(1.1)
            held = ups[0].read_bytes()
            assert one_after_the_other(held, a, b), f"round {round_}: mixed"
            try:
                os.rename(ups[0], ups[0].parent / digest(held))
            except OSError as exc:
                # S3, two writers opened at once: two pending writes at one key, one
                # completed by the read, the other by the finish, which refuses a
                # digest its content does not have; what it took is then the upload
                assert store.kind == "s3" and exc.errno == errno.EBADMSG, exc
                held = ups[0].read_bytes()
                assert one_after_the_other(held, a, b), f"round {round_}: mixed"
                os.rename(ups[0], ups[0].parent / digest(held))
            assert not store.files(f"{V2}/{REPO}/_uploads")
        check_store(store)
    finally:
        for m in mounts:
            m.stop()
    assert not any(is_mounted(m.mountpoint) for m in mounts)


def test_another_mount_finishes_an_upload_being_written(store: Store, tmp_path: Path) -> None:
    """Mount 1 keeps appending while mount 2 finishes the upload under the digest of
    what it holds: mount 1's next writes fail, and the blob keeps exactly its bytes."""
    mounts = [
        Mount(store.spec, tmp_path / f"m{i}", tmp_path / f"log{i}", env=store.env).start()
        for i in (1, 2)
    ]
    try:
        (mounts[0].mountpoint / REPO).mkdir(parents=True)
        up1 = mounts[0].mountpoint / REPO / "_uploads/x"
        fd = os.open(up1, os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"a" * MIB)
        os.fsync(fd)  # stored, as a close would leave it
        time.sleep(1.1)
        up2 = mounts[1].mountpoint / REPO / "_uploads/x"
        held = up2.read_bytes()
        assert held == b"a" * MIB
        os.rename(up2, up2.parent / digest(held))
        failed = None
        for _ in range(8):
            try:
                os.write(fd, b"b" * MIB)
                os.fsync(fd)
            except OSError as exc:
                failed = exc.errno
                break
        with contextlib.suppress(OSError):  # it returns; what it says was said by a write
            os.close(fd)
        assert failed in (errno.ENOENT, errno.ESTALE, errno.EBUSY, errno.EIO), failed
        blob = f"blobs/sha256/{digest(held)[7:9]}/{digest(held)[7:]}/data"
        assert (mounts[1].mountpoint / blob).read_bytes() == held
        check_store(store)
    finally:
        for m in mounts:
            m.stop()


def test_registry_writing_an_upload_the_mount_finishes(
    store: Store,
    store_registry,
    mount: Mount,
    uploads: Path,  # type: ignore[no-untyped-def]
) -> None:
    """docker-registry appends (PATCH) to an upload after the mount wrote and closed
    it: the mount's hash no longer covers the data, so its finish hashes the stored
    bytes; the digest of what the mount wrote is refused, the digest of everything
    stored is accepted, and the blob is exactly those bytes."""
    repo = REPO.removeprefix("repositories/")
    ours, theirs = os.urandom(MIB), b"appended by the registry"
    (uploads / "x").write_bytes(ours)
    upload_id = os.getxattr(uploads / "x", "user.layerfs.uuid").decode()
    started = os.getxattr(uploads / "x", "user.layerfs.startedat").decode()
    time.sleep(1.1)  # the writer's session has ended
    location = signed_upload_location(repo, upload_id, len(ours), started)
    store_registry.patch(location, theirs)  # the registry resumes from the stored state
    wrong = digest(ours)
    result = subprocess.run(["mv", str(uploads / "x"), str(uploads / wrong)], capture_output=True)
    assert result.returncode != 0, "the finish named bytes it did not verify"
    assert b"EBADMSG" in os.getxattr(uploads / "x", "user.layerfs.error")
    right = digest(ours + theirs)
    os.rename(uploads / "x", uploads / right)
    check_store(store)
    assert store_registry.get_blob(repo, right).body == ours + theirs
