"""The mounted view on a real kernel FUSE mount, driven with real tools: every row of
the README's view table (docs/DESIGN.md) and the errno it names."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import S3_BUCKET
from ..images import make_image
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry
from ..seaweed import SeaweedFS
from ..stores import FilesystemStore, S3Store

Store = FilesystemStore | S3Store

REPO = "repositories/library/hello"


def sh(command: str, cwd: Path) -> str:
    result = subprocess.run(["bash", "-ec", command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{command!r} failed: {result.stderr}"
    return result.stdout


def sh_fails(command: str, cwd: Path) -> str:
    result = subprocess.run(["bash", "-ec", command], cwd=cwd, capture_output=True, text=True)
    assert result.returncode != 0, f"{command!r} should have failed"
    return result.stderr


def errno_of(call, *args) -> int:  # type: ignore[no-untyped-def]
    try:
        call(*args)
    except OSError as exc:
        return exc.errno
    raise AssertionError(f"{call.__name__}{args} did not fail")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_rel(digest: str) -> str:
    hexpart = digest.split(":")[1]
    return f"docker/registry/v2/blobs/sha256/{hexpart[:2]}/{hexpart}/data"


@pytest.fixture
def repo(mount: Mount) -> Path:
    path = mount.mountpoint / REPO
    path.mkdir(parents=True)
    return path


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(7).randbytes(3_000_017)
    path = tmp_path / "payload"
    path.write_bytes(data)
    return path, data


def test_root_and_empty_repository(mount: Mount) -> None:
    assert sorted(os.listdir(mount.mountpoint)) == ["blobs", "repositories"]
    sh(f"mkdir -p {REPO}", mount.mountpoint)
    assert sorted(os.listdir(mount.mountpoint / REPO)) == ["_layers", "_manifests", "_uploads"]
    assert sorted(os.listdir(mount.mountpoint / REPO / "_manifests")) == ["revisions", "tags"]
    assert os.listdir(mount.mountpoint / "repositories/library") == ["hello"]


@pytest.mark.parametrize("name", ["Upper", "bad..name", "-lead", "_layers", "a b"])
def test_invalid_repository_names(mount: Mount, name: str) -> None:
    code = errno_of(os.mkdir, mount.mountpoint / "repositories" / name)
    assert code == errno.EINVAL
    assert not os.listdir(mount.mountpoint / "repositories")


def test_cp_then_mv_finishes(
    mount: Mount, repo: Path, payload: tuple[Path, bytes], store: Store
) -> None:
    source, data = payload
    sh(f"cp {source} _uploads/layer.tar", repo)
    upload = repo / "_uploads/layer.tar"
    st = os.stat(upload)
    assert st.st_size == len(data)
    assert st.st_blksize == 1 << 20
    assert sh("sha256sum _uploads/layer.tar", repo).split()[0] == hashlib.sha256(data).hexdigest()
    uuid = os.getxattr(upload, "user.layerfs.uuid").decode()
    assert os.getxattr(upload, "user.layerfs.offset") == str(len(data)).encode()
    started = os.getxattr(upload, "user.layerfs.startedat").decode()
    store_upload = f"docker/registry/v2/{REPO}/_uploads/{uuid}"
    assert store.read(f"{store_upload}/startedat").decode() == started

    digest = digest_of(data)
    sh(f"mv _uploads/layer.tar _uploads/{digest}", repo)
    assert os.listdir(repo / "_uploads") == []
    assert not store.exists(store_upload)
    assert store.read(blob_rel(digest)) == data
    link = repo / "_layers/sha256" / digest.split(":")[1] / "link"
    assert link.read_text() == digest
    blob = mount.mountpoint / "blobs/sha256" / digest[7:9] / digest[7:] / "data"
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest[7:]
    assert sh("find . -name link | wc -l", repo).strip() == "1"
    assert int(sh(f"du -sb blobs/sha256/{digest[7:9]}", mount.mountpoint).split()[0]) >= len(data)


def test_directories_are_read_in_small_buffers(
    mount: Mount, repo: Path, payload: tuple[Path, bytes]
) -> None:
    """Files keep a 1 MiB st_blksize (cp writes and cat reads in 1 MiB pieces), but a
    directory's is a page: glibc's opendir sizes the getdents buffer by it, the kernel
    asks the daemon for a READDIRPLUS of that size, and pyfuse3 allocates and zeroes
    that much for every reply (1 MiB there made a find of the mount a third slower)."""
    source, data = payload
    sh(f"cp {source} _uploads/layer.tar && mv _uploads/layer.tar _uploads/{digest_of(data)}", repo)
    blob = mount.mountpoint / blob_rel(digest_of(data)).removeprefix("docker/registry/v2/")
    assert os.stat(blob).st_blksize == 1 << 20
    sh("touch _uploads/next", repo)
    assert os.stat(repo / "_uploads/next").st_blksize == 1 << 20
    directories = [mount.mountpoint, repo, repo / "_uploads", repo / "_layers/sha256", blob.parent]
    for directory in directories:
        assert os.stat(directory).st_blksize == 4096, directory
    traced = subprocess.run(
        ["strace", "-e", "trace=getdents64", "ls", "-f", *map(str, directories)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    sizes = [int(line.rsplit(",", 1)[1].split(")")[0]) for line in traced.stderr.splitlines()
             if line.startswith("getdents64(")]  # fmt: skip
    assert len(sizes) >= 2 * len(directories)  # each read until it gives nothing
    assert max(sizes) <= 32768  # glibc's least, where 1 MiB asked for 1 MiB


def test_writes_must_append(mount: Mount, repo: Path) -> None:
    path = repo / "_uploads/x"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY)
    try:
        os.write(fd, b"hello")
        assert errno_of(os.pwrite, fd, b"X", 0) == errno.EINVAL
        assert os.pwrite(fd, b" world", 5) == 6
        assert os.pwrite(fd, b"!", 20) == 1  # past the end: the gap reads as zeros
    finally:
        os.close(fd)
    assert path.read_bytes() == b"hello world" + bytes(9) + b"!"
    assert "EINVAL" in os.getxattr(path, "user.layerfs.error").decode()
    assert errno_of(os.truncate, path, 3) == errno.EINVAL


def test_cp_of_a_sparse_file(mount: Mount, repo: Path, tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:  # data, a 4 MiB hole, data, and a hole at the end
        f.write(b"head")
        f.seek(4 << 20)
        f.write(b"tail")
        f.truncate(9 << 20)
    sh(f"cp --sparse=always {sparse} _uploads/sparse", repo)
    assert (repo / "_uploads/sparse").read_bytes() == sparse.read_bytes()
    digest = hashlib.sha256(sparse.read_bytes()).hexdigest()
    sh(f"mv _uploads/sparse _uploads/sha256:{digest}", repo)
    assert (repo / f"_layers/sha256/{digest}/link").read_text() == f"sha256:{digest}"


def test_truncate_restarts_and_rm_cancels(mount: Mount, repo: Path, store: Store) -> None:
    path = repo / "_uploads/x"
    path.write_bytes(b"wrong content, long")
    uuid = os.getxattr(path, "user.layerfs.uuid").decode()
    path.write_bytes(b"right")  # open with O_TRUNC
    assert path.read_bytes() == b"right"
    assert os.getxattr(path, "user.layerfs.uuid").decode() == uuid
    os.truncate(path, 0)
    assert path.stat().st_size == 0
    sh("printf again >> _uploads/x", repo)
    assert path.read_bytes() == b"again"
    os.unlink(path)
    assert not store.exists(f"docker/registry/v2/{REPO}/_uploads/{uuid}")
    assert os.listdir(repo / "_uploads") == []


def test_touch_and_dd(mount: Mount, repo: Path, tmp_path: Path) -> None:
    sh("touch _uploads/empty", repo)
    assert (repo / "_uploads/empty").stat().st_size == 0
    sh(f"mv _uploads/empty _uploads/{digest_of(b'')}", repo)
    assert (repo / "_layers/sha256" / hashlib.sha256(b"").hexdigest() / "link").exists()
    src = tmp_path / "dd-src"
    src.write_bytes(random.Random(1).randbytes(5 << 20))
    sh(f"dd if={src} of=_uploads/dd bs=64k status=none", repo)
    sh(f"dd if={src} of=_uploads/dd2 bs=3M status=none conv=fsync", repo)
    assert (repo / "_uploads/dd").read_bytes() == src.read_bytes()
    assert (repo / "_uploads/dd2").read_bytes() == src.read_bytes()


def test_wrong_digest_is_refused_and_kept(
    mount: Mount, repo: Path, payload: tuple[Path, bytes], store: Store
) -> None:
    source, data = payload
    sh(f"cp {source} _uploads/x", repo)
    wrong = digest_of(b"not it")
    err = sh_fails(f"mv _uploads/x _uploads/{wrong}", repo)
    assert "Bad message" in err
    reason = os.getxattr(repo / "_uploads/x", "user.layerfs.error").decode()
    assert "EBADMSG" in reason and wrong in reason and digest_of(data) in reason
    assert not store.exists(blob_rel(wrong))
    assert (repo / "_uploads/x").read_bytes() == data
    code = errno_of(os.rename, repo / "_uploads/x", repo / "_uploads/sha256:abc")
    assert code == errno.EINVAL
    code = errno_of(os.rename, repo / "_uploads/x", repo / f"_uploads/md5:{'0' * 32}")
    assert code == errno.EINVAL
    sh(f"mv _uploads/x _uploads/{digest_of(data)}", repo)
    assert store.read(blob_rel(digest_of(data))) == data
    assert "EBADMSG" in mount.log_text()


def test_existing_blob_is_not_stored_again(
    mount: Mount, repo: Path, payload: tuple[Path, bytes], store: Store
) -> None:
    source, data = payload
    digest = digest_of(data)
    sh(f"cp {source} _uploads/a && mv _uploads/a _uploads/{digest}", repo)
    before = store.version(blob_rel(digest))
    other = mount.mountpoint / "repositories/other"
    other.mkdir()
    sh(f"cp {source} _uploads/b && mv _uploads/b _uploads/{digest}", other)
    assert store.version(blob_rel(digest)) == before
    assert (other / "_layers/sha256" / digest[7:] / "link").read_text() == digest


def renameat2(old: Path, new: Path, flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, bytes(old), at_fdcwd, bytes(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def test_rename_between_uploads(mount: Mount, repo: Path) -> None:
    (repo / "_uploads/a").write_bytes(b"aaa")
    (repo / "_uploads/b").write_bytes(b"bbb")
    assert errno_of(renameat2, repo / "_uploads/a", repo / "_uploads/b", 1) == errno.EEXIST
    os.rename(repo / "_uploads/a", repo / "_uploads/b")  # replaces (cancels) the old b
    assert os.listdir(repo / "_uploads") == ["b"]
    assert (repo / "_uploads/b").read_bytes() == b"aaa"
    (repo / "_uploads/c").write_bytes(b"ccc")
    assert errno_of(renameat2, repo / "_uploads/b", repo / "_uploads/c", 2) == errno.EINVAL
    assert (repo / "_uploads/c").read_bytes() == b"ccc"


def test_mv_into_another_repository(mount: Mount, repo: Path) -> None:
    other = mount.mountpoint / "repositories/other"
    other.mkdir()
    (repo / "_uploads/a").write_bytes(b"moving")
    assert errno_of(os.rename, repo / "_uploads/a", other / "_uploads/a") == errno.EXDEV
    sh(f"mv _uploads/a {other}/_uploads/a", repo)  # mv copies across the EXDEV
    assert os.listdir(repo / "_uploads") == []
    assert (other / "_uploads/a").read_bytes() == b"moving"


def test_rsync_into_uploads(mount: Mount, repo: Path, payload: tuple[Path, bytes]) -> None:
    source, data = payload
    sh(f"rsync {source} _uploads/synced", repo)
    assert os.listdir(repo / "_uploads") == ["synced"]
    assert (repo / "_uploads/synced").read_bytes() == data


def test_blobs_are_read_only(mount: Mount, repo: Path, payload: tuple[Path, bytes]) -> None:
    source, data = payload
    digest = digest_of(data)
    sh(f"cp {source} _uploads/a && mv _uploads/a _uploads/{digest}", repo)
    blob = mount.mountpoint / "blobs/sha256" / digest[7:9] / digest[7:] / "data"
    assert errno_of(os.open, blob, os.O_WRONLY) == errno.EPERM
    assert errno_of(os.unlink, blob) == errno.EPERM
    assert errno_of(os.open, blob.parent / "new", os.O_CREAT | os.O_WRONLY) == errno.EPERM
    assert errno_of(os.mkdir, mount.mountpoint / "blobs/sha512") == errno.EPERM
    assert errno_of(os.rename, blob, blob.parent / "other") == errno.EPERM
    for _ in range(2):  # cached by the kernel the second time
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == digest[7:]


def test_link_files(mount: Mount, repo: Path, payload: tuple[Path, bytes]) -> None:
    source, data = payload
    digest = digest_of(data)
    sh(f"cp {source} _uploads/a && mv _uploads/a _uploads/{digest}", repo)
    other = mount.mountpoint / "repositories/other"
    # cross-repository mount: write the digest into the other repository's link
    sh(f"mkdir -p {other}/_layers/sha256/{digest[7:]}", repo)
    sh(f"printf {digest} > {other}/_layers/sha256/{digest[7:]}/link", repo)
    assert (other / "_layers/sha256" / digest[7:] / "link").read_text() == digest
    # unknown blob, garbage, a digest that is not the path's
    unknown = digest_of(b"never stored")
    folder = f"_layers/sha256/{unknown[7:]}"
    for content, message in [
        (f"printf {unknown}", "No such file"),
        ("echo garbage", "Invalid argument"),
        (f"printf {digest}", "Invalid argument"),
    ]:
        err = sh_fails(f"mkdir -p {folder} && {content} > {folder}/link", repo)
        assert message in err
        # the folder mkdir -p made goes with the refusal; the reason stays on the
        # deepest one that still shows (the repository links a blob already)
        assert not (repo / folder).exists()
        reason = os.getxattr(repo / "_layers/sha256", "user.layerfs.error").decode()
        assert reason.startswith(f"{REPO}/{folder}/link: E")
    assert errno_of(os.mkdir, repo / "_layers/md5") == errno.EINVAL
    assert errno_of(os.mkdir, repo / "_layers/sha256/abc") == errno.EINVAL
    # rm unlinks; the blob stays
    sh(f"rm -r {other}/_layers/sha256/{digest[7:]}", repo)
    assert not (other / "_layers/sha256" / digest[7:]).exists()
    assert (repo / "_layers/sha256" / digest[7:] / "link").exists()


def push_image_through_mount(repo: Path, tmp_path: Path, seed: int) -> tuple[str, bytes]:
    image = make_image(seed, layers=2, docker=True)
    for i, blob in enumerate([*image.layers, image.config]):
        (tmp_path / f"blob{i}").write_bytes(blob)
        sh(
            f"cp {tmp_path}/blob{i} _uploads/b{i} && mv _uploads/b{i} _uploads/{digest_of(blob)}",
            repo,
        )
    (tmp_path / "manifest").write_bytes(image.manifest)
    digest = digest_of(image.manifest)
    sh(f"cp {tmp_path}/manifest _uploads/m && mv _uploads/m _uploads/{digest}", repo)
    sh(f"mkdir -p _manifests/revisions/sha256/{digest[7:]}", repo)
    sh(f"printf {digest} > _manifests/revisions/sha256/{digest[7:]}/link", repo)
    sh(
        f"mkdir -p _manifests/tags/v1/current && printf {digest} > _manifests/tags/v1/current/link",
        repo,
    )
    return digest, image.manifest


def test_manifests_and_tags(mount: Mount, repo: Path, tmp_path: Path) -> None:
    digest, manifest = push_image_through_mount(repo, tmp_path, 50)
    assert (repo / "_manifests/tags/v1/current/link").read_text() == digest
    assert (repo / "_manifests/tags/v1/index/sha256" / digest[7:] / "link").read_text() == digest
    doc = json.loads(
        (mount.mountpoint / "blobs/sha256" / digest[7:9] / digest[7:] / "data").read_text()
    )
    assert doc == json.loads(manifest)
    # a manifest whose blobs are not linked here is refused, naming every missing one
    other = mount.mountpoint / "repositories/empty"
    sh(f"mkdir -p {other}/_manifests/revisions/sha256/{digest[7:]}", repo)
    err = sh_fails(f"printf {digest} > {other}/_manifests/revisions/sha256/{digest[7:]}/link", repo)
    assert "Invalid argument" in err  # bash names the errno; the reason is in the xattr
    reason = os.getxattr(other / "_manifests/revisions", "user.layerfs.error").decode()
    log = mount.log_text()
    for layer in json.loads(manifest)["layers"]:
        assert layer["digest"] in log and layer["digest"] in reason
    assert not (other / "_manifests/revisions/sha256").exists()  # no phantom folder
    # tag errors
    err = sh_fails("mkdir -p _manifests/tags/.bad", repo)
    assert "Invalid argument" in err
    unknown = digest_of(b"no manifest")
    err = sh_fails(
        f"mkdir -p _manifests/tags/v2/current && printf {unknown} > "
        "_manifests/tags/v2/current/link",
        repo,
    )
    assert "No such file" in err
    assert not (repo / "_manifests/tags/v2").exists()  # what mkdir -p made went with it
    # untag with rm -r; deleting the revision removes its tags too
    tags = repo / "_manifests/tags"
    sh(f"mkdir -p {tags}/v3/current && printf {digest} > {tags}/v3/current/link", repo)
    sh("rm -r _manifests/tags/v1", repo)
    assert sorted(os.listdir(repo / "_manifests/tags")) == ["v3"]
    sh(f"rm _manifests/revisions/sha256/{digest[7:]}/link", repo)
    assert os.listdir(repo / "_manifests/tags") == []


def layerfs_status(mount: Mount, *options: str) -> str:
    return subprocess.run(
        [LAYERFS, "status", *options, str(mount.mountpoint)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_status_lists_open_uploads(mount: Mount, repo: Path) -> None:
    with open(repo / "_uploads/open-one", "wb") as f:
        f.write(b"x" * 100_000)
        f.flush()
        (entry,) = json.loads(layerfs_status(mount, "--json"))
        assert entry["repository"] == "library/hello"
        assert entry["name"] == "open-one"
        assert entry["bytes"] == 100_000
        table = layerfs_status(mount)
        assert "open-one" in table and "100,000" in table
    assert json.loads(layerfs_status(mount, "--json")) == []


def test_concurrent_uploads(mount: Mount, repo: Path, tmp_path: Path) -> None:
    files = []
    for i in range(4):
        path = tmp_path / f"c{i}"
        path.write_bytes(random.Random(i).randbytes(4 << 20))
        files.append(path)
    same = tmp_path / "same"
    same.write_bytes(random.Random(99).randbytes(6 << 20))
    digest = digest_of(same.read_bytes())
    script = " & ".join(f"cp {f} _uploads/c{i}" for i, f in enumerate(files)) + " & wait"
    sh(script, repo)
    for i, f in enumerate(files):
        assert (repo / f"_uploads/c{i}").read_bytes() == f.read_bytes()
    sh(f"cp {same} _uploads/s1 & cp {same} _uploads/s2 & wait", repo)
    sh(f"mv _uploads/s1 _uploads/{digest} & mv _uploads/s2 _uploads/{digest} & wait", repo)
    assert sorted(os.listdir(repo / "_uploads")) == [f"c{i}" for i in range(4)]
    assert (repo / "_layers/sha256" / digest[7:] / "link").read_text() == digest


def test_resume_after_remount(store: Store, tmp_path: Path, payload: tuple[Path, bytes]) -> None:
    source, data = payload
    half = len(data) // 2
    (tmp_path / "first").write_bytes(data[:half])
    (tmp_path / "second").write_bytes(data[half:])
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log", env=store.env).start()
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        sh(f"cp {tmp_path}/first _uploads/part", repo)
    finally:
        mount.stop()
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log2", env=store.env).start()
    try:
        repo = mount.mountpoint / REPO
        assert (repo / "_uploads/part").stat().st_size == half
        sh(f"cat {tmp_path}/second >> _uploads/part", repo)
        sh(f"mv _uploads/part _uploads/{digest_of(data)}", repo)
        assert store.read(blob_rel(digest_of(data))) == data
        assert "hashing" not in mount.log_text()  # resumed from the stored state
    finally:
        mount.stop()


def test_rm_of_the_last_upload_keeps_the_repository(store: Store, tmp_path: Path) -> None:
    """On S3 a repository whose only key was an upload is gone once the upload is; the
    view keeps it (and its _uploads) until unmount, as a filesystem store does."""
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log", env=store.env).start()
    try:
        (mount.mountpoint / REPO).mkdir(parents=True)
        (mount.mountpoint / REPO / "_uploads/only").write_bytes(b"abandoned")
    finally:
        mount.stop()
    mount = Mount(store.spec, tmp_path / "mnt", tmp_path / "log2", env=store.env).start()
    try:
        repo = mount.mountpoint / REPO
        os.unlink(repo / "_uploads/only")
        assert store.files(f"docker/registry/v2/{REPO}") == []  # nothing stored is left
        assert os.listdir(repo / "_uploads") == []
        assert "_uploads" in os.listdir(repo)
        assert REPO.rsplit("/", 1)[1] in os.listdir(repo.parent)
        (repo / "_uploads/again").write_bytes(b"next")  # and it takes new uploads
        assert (repo / "_uploads/again").read_bytes() == b"next"
    finally:
        mount.stop()


def test_read_only_mount_refuses_writes(
    store: Store, tmp_path: Path, payload: tuple[Path, bytes]
) -> None:
    source, data = payload
    rw = Mount(store.spec, tmp_path / "mnt", tmp_path / "log", env=store.env).start()
    try:
        repo = rw.mountpoint / REPO
        repo.mkdir(parents=True)
        sh(f"cp {source} _uploads/kept", repo)
        sh(f"cp {source} _uploads/a && mv _uploads/a _uploads/{digest_of(data)}", repo)
    finally:
        rw.stop()
    ro = Mount(store.spec, tmp_path / "mnt", tmp_path / "log-ro", "-o", "ro", env=store.env)
    ro.start()
    try:
        repo = ro.mountpoint / REPO
        link = repo / "_layers/sha256" / digest_of(data)[7:] / "link"
        assert link.read_text() == digest_of(data)
        assert (repo / "_uploads/kept").read_bytes() == data
        calls = [
            (os.open, repo / "_uploads/new", os.O_CREAT | os.O_WRONLY),
            (os.open, repo / "_uploads/kept", os.O_WRONLY | os.O_APPEND),
            (os.truncate, repo / "_uploads/kept", 0),
            (os.unlink, repo / "_uploads/kept"),
            (os.rename, repo / "_uploads/kept", repo / f"_uploads/{digest_of(data)}"),
            (os.mkdir, ro.mountpoint / "repositories/new"),
            (os.open, link, os.O_WRONLY | os.O_TRUNC),
            (os.unlink, link),
            (os.rmdir, repo / "_manifests/tags"),
        ]
        for call, *args in calls:
            assert errno_of(call, *args) == errno.EROFS, (call.__name__, args)
    finally:
        ro.stop()


def test_mount_refuses_mounted_mountpoint(mount: Mount, store_dir: Path) -> None:
    result = subprocess.run(
        [LAYERFS, "mount", str(store_dir), str(mount.mountpoint)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "already mounted" in result.stderr


def test_daemon_mode_and_umount_waits(store_dir: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "daemon-mnt"
    subprocess.run(
        [LAYERFS, "mount", "--log-file", str(tmp_path / "d.log"), str(store_dir), str(mnt)],
        check=True,
        timeout=30,
    )
    pid = int(os.getxattr(mnt, "user.layerfs.pid"))
    (mnt / "repositories/x").mkdir(parents=True)
    fd = os.open(mnt / "repositories/x/_uploads/open", os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"data left open")
    os.kill(pid, 15)  # SIGTERM closes open uploads with their hash state, then unmounts
    deadline = time.monotonic() + 20
    while daemon_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not daemon_alive(pid)
    assert errno_of(os.close, fd) == errno.ENOTCONN  # the daemon is gone, as asked
    uploads = list((store_dir / "docker/registry/v2/repositories/x/_uploads").iterdir())
    assert len(uploads) == 1
    assert (uploads[0] / "data").read_bytes() == b"data left open"
    assert (uploads[0] / "hashstates/sha256/14").stat().st_size == 108
    subprocess.run(
        [LAYERFS, "mount", "--log-file", str(tmp_path / "d.log"), str(store_dir), str(mnt)],
        check=True,
        timeout=30,
    )
    pid = int(os.getxattr(mnt, "user.layerfs.pid"))
    subprocess.run([LAYERFS, "umount", str(mnt)], check=True, timeout=60)
    assert not daemon_alive(pid)  # umount returned only after the daemon exited


def daemon_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_mount_8_with_fstab_options(store_dir: Path, tmp_path: Path) -> None:
    """What an fstab line does: mount(8) → mount.fuse3 → ``layerfs STORE MNT -o ...``
    (scripts/setup puts layerfs on the system PATH)."""
    mnt = tmp_path / "fstab-mnt"
    mnt.mkdir()
    subprocess.run(
        [
            "mount",
            "-t",
            "fuse.layerfs",
            str(store_dir),
            str(mnt),
            "-o",
            "defaults,nofail,allow_other",
        ],
        check=True,
        timeout=30,
    )
    try:
        assert sorted(os.listdir(mnt)) == ["blobs", "repositories"]
        with open("/proc/self/mountinfo") as info:
            line = next(line for line in info if line.split()[4] == str(mnt))
        assert "fuse.layerfs" in line and "allow_other" in line
    finally:
        subprocess.run([LAYERFS, "umount", str(mnt)], check=True, timeout=60)


def test_everyday_tools(mount: Mount, repo: Path, payload: tuple[Path, bytes]) -> None:
    source, data = payload
    sh(f"cp {source} _uploads/tool", repo)
    listing = sh("ls -l _uploads", repo)
    assert f" {len(data)} " in listing and listing.rstrip().endswith("tool")
    assert sh("stat -c '%s %o %F' _uploads/tool", repo).split() == [
        str(len(data)),
        "1048576",
        "regular",
        "file",
    ]
    attrs = sh("getfattr -d -m user.layerfs _uploads/tool", repo)
    assert f'user.layerfs.offset="{len(data)}"' in attrs
    assert "user.layerfs.uuid=" in attrs and "user.layerfs.startedat=" in attrs
    assert str(mount.mountpoint) in sh("df -k .", mount.mountpoint)  # statfs answers
    pid = sh("getfattr --only-values -n user.layerfs.pid .", mount.mountpoint)
    assert int(pid) == mount.pid
    # forked writers share one descriptor: each child's close flushes, the data adds up
    sh("( printf one; (printf two); sh -c 'printf three' ) > _uploads/forked", repo)
    assert (repo / "_uploads/forked").read_bytes() == b"onetwothree"
    assert sh("cat _uploads/forked", repo) == "onetwothree"


def test_memory_store(tmp_path: Path, payload: tuple[Path, bytes]) -> None:
    source, data = payload
    mount = Mount("memory://", tmp_path / "mem-mnt", tmp_path / "mem.log").start()
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        sh(f"cp {source} _uploads/m && mv _uploads/m _uploads/{digest_of(data)}", repo)
        assert sh(f"cat _layers/sha256/{digest_of(data)[7:]}/link", repo) == digest_of(data)
        blob = mount.mountpoint / "blobs/sha256" / digest_of(data)[7:9] / digest_of(data)[7:]
        assert (blob / "data").read_bytes() == data
        assert os.statvfs(mount.mountpoint).f_namemax == 255
    finally:
        mount.stop()


def test_s3_store(seaweedfs: SeaweedFS, tmp_path: Path, payload: tuple[Path, bytes]) -> None:
    """``layerfs mount s3://BUCKET/ROOT`` with the endpoint from the AWS environment."""
    source, data = payload
    env = seaweedfs.aws_env()
    store = f"s3://{S3_BUCKET}/mount-{tmp_path.name}"
    mount = Mount(store, tmp_path / "s3-mnt", tmp_path / "s3.log", env=env).start()
    try:
        repo = mount.mountpoint / REPO
        repo.mkdir(parents=True)
        sh(f"cp {source} _uploads/s", repo)
        before = int(os.getxattr(mount.mountpoint, "user.layerfs.bytes-read"))
        sh(f"mv _uploads/s _uploads/{digest_of(data)}", repo)
        after = int(os.getxattr(mount.mountpoint, "user.layerfs.bytes-read"))
        assert after - before <= 200  # a hash state and startedat, never the data
        assert sh(f"cat _layers/sha256/{digest_of(data)[7:]}/link", repo) == digest_of(data)
        blob = mount.mountpoint / "blobs/sha256" / digest_of(data)[7:9] / digest_of(data)[7:]
        assert hashlib.sha256((blob / "data").read_bytes()).hexdigest() == digest_of(data)[7:]
        os.statvfs(mount.mountpoint)
        key = f"mount-{tmp_path.name}/docker/registry/v2/blobs/sha256/{digest_of(data)[7:9]}"
        listed = seaweedfs.client().list_objects_v2(Bucket=S3_BUCKET, Prefix=key)
        assert [o["Size"] for o in listed["Contents"]] == [len(data)]
    finally:
        mount.stop()


def test_what_the_registry_writes_shows_within_the_directory_timeout(
    store: Store, store_registry: DockerRegistry, mount: Mount, tmp_path: Path
) -> None:
    """The README's promise: a tag pushed, or an upload started, by docker-registry
    beside the mount is seen within DIR_TIMEOUT, though the mount has just listed
    the directories it lands in (and remembers that listing)."""
    from layerfs.fs.state import DIR_TIMEOUT

    from ..images import write_oci_layout
    from ..registry import skopeo_push

    image = make_image(seed=77, layers=1)
    skopeo_push(write_oci_layout(image, tmp_path / "l1", "v1"), "v1", store_registry, "app:v1")
    tags = mount.mountpoint / "repositories/app/_manifests/tags"
    uploads = mount.mountpoint / "repositories/app/_uploads"
    assert sorted(os.listdir(tags)) == ["v1"]
    before = set(os.listdir(uploads))
    skopeo_push(write_oci_layout(image, tmp_path / "l2", "v2"), "v2", store_registry, "app:v2")
    store_registry.start_upload("app")
    time.sleep(DIR_TIMEOUT + 0.2)  # what the promise allows, then one look
    assert sorted(os.listdir(tags)) == ["v1", "v2"]
    assert (tags / "v2/current/link").read_text() == (tags / "v1/current/link").read_text()
    assert len(set(os.listdir(uploads)) - before) == 1
