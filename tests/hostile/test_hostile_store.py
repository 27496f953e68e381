"""A store whose writers are hostile: symbolic links (and a FIFO) placed where the
layout has files and directories. The mount runs as root, so whatever it followed
anyone could read or overwrite; nothing below the store's root is ever followed,
by the mount or by any command."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerfs.drivers import FilesystemDriver, UnsafeEntryError
from layerfs.drivers.beneath import Beneath

from ..images import make_image, sha256, write_oci_layout
from ..mounts import Mount, run_layerfs
from ..registry import DockerRegistry, skopeo_push

V2 = "docker/registry/v2"
SECRET = b"root:$y$j9T$not-for-your-eyes:19000:0:99999:7:::\n"


def layerfs(*args: str) -> subprocess.CompletedProcess[str]:
    return run_layerfs(*args, timeout=120)


class Planted:
    """A store pushed by docker-registry, then given symlinks to files outside it."""

    def __init__(self, tmp_path: Path, store: Path, registry: DockerRegistry) -> None:
        self.store = store
        self.outside = tmp_path / "outside"
        self.outside.mkdir()
        self.secret = self.outside / "shadow"
        self.secret.write_bytes(SECRET)
        self.secret.chmod(0o600)
        self.victim = self.outside / "victim"  # a file a link write must not replace
        self.victim.write_bytes(b"keep me\n")
        (self.outside / "repo").mkdir()  # where a symlinked repository points
        image = make_image(seed=7, layers=2)
        skopeo_push(write_oci_layout(image, tmp_path / "layout", "v1"), "v1", registry, "app:v1")
        self.image = image
        tags = store / V2 / "repositories/app/_manifests/tags/v1/current/link"
        self.manifest_hex = tags.read_text().split(":")[1]
        self.config_hex = sha256(image.config).split(":")[1]
        layers = store / V2 / "repositories" / "app" / "_layers" / "sha256"
        self.layer_hex = min(p.name for p in layers.iterdir() if p.name != self.config_hex)
        self.data = f"{V2}/blobs/sha256/{self.config_hex[:2]}/{self.config_hex}/data"
        self.link = f"{V2}/repositories/app/_layers/sha256/{self.layer_hex}/link"
        self.tag_link = f"{V2}/repositories/app/_manifests/tags/v1/current/link"
        self._symlink(self.data, self.secret)
        self._symlink(self.link, self.secret)
        self._symlink(self.tag_link, self.victim)
        os.symlink(self.outside / "repo", store / V2 / "repositories" / "evil")
        os.mkfifo(store / V2 / "repositories" / "app" / "_layers" / "fifo")
        # abandoned uploads left by the registry's API, one made a symlink to a
        # directory outside, one whose data is a symlink to the victim
        uploads = store / V2 / "repositories" / "app" / "_uploads"
        for _ in range(2):
            registry.patch(registry.start_upload("app"), b"abandoned")
        linked_dir, linked_data = sorted(p.name for p in uploads.iterdir())
        shutil.copytree(uploads / linked_dir, self.outside / "upload")
        shutil.rmtree(uploads / linked_dir)
        os.symlink(self.outside / "upload", uploads / linked_dir)
        self._symlink(f"{V2}/repositories/app/_uploads/{linked_data}/data", self.victim)
        self.linked_upload_dir = uploads / linked_dir

    def _symlink(self, rel: str, target: Path) -> None:
        (self.store / rel).unlink()
        os.symlink(target, self.store / rel)

    def outside_untouched(self) -> None:
        assert self.secret.read_bytes() == SECRET
        assert self.victim.read_bytes() == b"keep me\n"
        assert list((self.outside / "repo").iterdir()) == []
        assert (self.outside / "upload" / "data").read_bytes() == b"abandoned"
        for rel in (self.data, self.link, self.tag_link):
            assert (self.store / rel).is_symlink(), rel  # nothing deleted them either


@pytest.fixture
def planted(tmp_path: Path, store_dir: Path, docker_registry: DockerRegistry) -> Planted:
    return Planted(tmp_path, store_dir, docker_registry)


def as_nobody(command: str, fails: bool = False) -> None:
    """Run ``command`` as user nobody: what other users of an allow_other mount may
    do. default_permissions makes the kernel check the modes the mount shows (owned
    by the daemon's user, not writable by others)."""
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert (result.returncode != 0) == fails, (command, result.stderr)


def errno_of(call) -> int:  # type: ignore[no-untyped-def]
    try:
        call()
    except OSError as exc:
        return exc.errno or 0
    raise AssertionError("no error")


@pytest.fixture
def open_mountpoint() -> Iterator[Path]:
    """A mount point other users can reach (pytest's own directories are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="layerfs-allow-other-"))
    path.chmod(0o755)
    yield path
    path.rmdir()


def test_the_mount_follows_no_symlink(
    planted: Planted, tmp_path: Path, open_mountpoint: Path
) -> None:
    mnt = open_mountpoint
    mounted = Mount(planted.store, mnt, tmp_path / "layerfs.log", "-o", "allow_other").start()
    try:
        data = mnt / planted.data.removeprefix(f"{V2}/")
        link = mnt / planted.link.removeprefix(f"{V2}/")
        tag_link = mnt / planted.tag_link.removeprefix(f"{V2}/")
        for path in (data, link, tag_link):
            assert errno_of(path.read_bytes) == errno.EACCES, path
        # a link write would have replaced the file outside
        digest = planted.image.manifest_digest.encode()
        assert errno_of(lambda: tag_link.write_bytes(digest)) == errno.EACCES
        evil = mnt / "repositories" / "evil"
        assert "evil" in os.listdir(mnt / "repositories")  # shown, but unreadable
        assert errno_of(lambda: os.listdir(evil)) == errno.EACCES
        assert errno_of(lambda: (evil / "_uploads" / "x").write_bytes(b"planted")) in (
            errno.EACCES,
            errno.ENOENT,
        )
        uploads = mnt / "repositories" / "app" / "_uploads"
        for upload in os.listdir(uploads):  # both abandoned uploads: never opened
            assert errno_of((uploads / upload).read_bytes) == errno.EACCES, upload
            path = uploads / upload
            assert errno_of(functools.partial(path.write_bytes, b"planted")) == errno.EACCES
        fifo = mnt / "repositories" / "app" / "_layers" / "fifo"
        assert errno_of(fifo.read_bytes) in (errno.EACCES, errno.ENOENT)  # never opened
        # what is not a symlink still reads
        real = planted.store / V2 / "blobs"
        data = next(p for p in real.glob("sha256/*/*/data") if not p.is_symlink())
        real_blob = "blobs" / data.relative_to(real)
        assert (mnt / real_blob).read_bytes() == data.read_bytes()
        data = mnt / planted.data.removeprefix(f"{V2}/")
        as_nobody(f"cat {data} > /dev/null", fails=True)  # another user of the allow_other mount
        as_nobody(f"cat {mnt / real_blob} > /dev/null")  # reads what is stored...
        as_nobody(f"echo x > {mnt}/repositories/app/_uploads/n", fails=True)  # ...writes nothing
        as_nobody(f"mkdir {mnt}/repositories/new", fails=True)
        assert not (planted.store / V2 / "repositories/new").exists()
        log = mounted.log_text()
        assert "a symbolic link, not followed" in log
        assert "Traceback" not in log
    finally:
        mounted.stop()
    planted.outside_untouched()


def test_fsck_reports_each_symlink_and_repair_leaves_them(planted: Planted) -> None:
    result = layerfs("fsck", str(planted.store))
    assert result.returncode != 0, result.stdout
    out = result.stdout + result.stderr
    for rel in (planted.data, planted.link, planted.tag_link):
        assert f"/{rel}" in out or rel.removeprefix(f"{V2}/") in out, (rel, out)
    assert "repositories/evil" in out
    assert "_layers/fifo: not a digest algorithm" in out
    assert "symbolic link" in out
    assert "Traceback" not in out
    repaired = layerfs("fsck", "--repair", "--grace", "0s", str(planted.store))
    assert "Traceback" not in repaired.stdout + repaired.stderr
    planted.outside_untouched()
    # the manifest whose config is a symlink is not known to be broken: it stays
    revisions = planted.store / V2 / "repositories/app/_manifests/revisions/sha256"
    assert [p.name for p in revisions.iterdir()] == [planted.manifest_hex]


def test_gc_and_purge_delete_nothing_through_a_symlink(planted: Planted) -> None:
    gc = layerfs("gc", "--grace", "0s", str(planted.store))
    out = gc.stdout + gc.stderr
    assert "Traceback" not in out
    assert gc.returncode == 1, out  # the mark could not read everything: nothing deleted
    assert "deleted nothing" in out
    assert "repositories/evil: a symbolic link" in out
    assert (planted.store / planted.data).is_symlink()
    purge = layerfs("purge-uploads", "--older-than", "0s", str(planted.store))
    assert "Traceback" not in purge.stdout + purge.stderr, purge.stderr
    assert purge.returncode == 0, purge.stderr
    # the upload whose data was a symlink is purged (the link goes, the victim stays);
    # the one that is a symlink itself is left alone
    uploads = planted.store / V2 / "repositories/app/_uploads"
    assert [p.name for p in uploads.iterdir()] == [planted.linked_upload_dir.name]
    assert planted.linked_upload_dir.is_symlink()
    planted.outside_untouched()


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "O_NOFOLLOW walk"])
async def test_the_driver_follows_no_symlink_on_either_path(tmp_path: Path, use_openat2) -> None:
    """Both ways of resolving a path refuse a symlink at any component, and a
    directory made on the way never goes through one."""
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    os.symlink(outside, root / "a" / "dir")
    os.symlink(outside / "secret", root / "a" / "file")
    driver = FilesystemDriver(root)
    driver._beneath = Beneath(str(root), use_openat2=use_openat2)
    for path in ("/a/dir/secret", "/a/file"):
        with pytest.raises(UnsafeEntryError):
            await driver.get_content(path)
        with pytest.raises(UnsafeEntryError):
            await driver.stat(path)
    with pytest.raises(UnsafeEntryError):
        await driver.list("/a/dir")
    with pytest.raises(UnsafeEntryError):
        await driver.put_content("/a/dir/new/x", b"planted")
    with pytest.raises(UnsafeEntryError):
        await driver.writer("/a/dir/data")
    with pytest.raises(UnsafeEntryError):
        await driver.move("/a/file", "/a/moved")
    with pytest.raises(UnsafeEntryError):
        await driver.delete("/a/dir")
    with pytest.raises(UnsafeEntryError):
        await driver.reader("/a/file")
    with pytest.raises(UnsafeEntryError):
        await driver.digest_file("/a/file", "sha256")
    # a put over a symlink replaces the link itself, never the file it names
    await driver.put_content("/a/file", b"new")
    assert (root / "a" / "file").read_bytes() == b"new"
    assert not (root / "a" / "file").is_symlink()
    # a tree removed with a symlink inside: the symlink goes, what it named stays
    (root / "t").mkdir()
    os.symlink(outside, root / "t" / "link")
    await driver.delete("/t")
    assert not (root / "t").exists()
    assert (outside / "secret").read_bytes() == SECRET
    assert sorted(os.listdir(outside)) == ["secret"]
    shutil.rmtree(root)


async def test_gc_sweeps_past_a_symlinked_layer_link(tmp_path: Path) -> None:
    """The mark reads every manifest, so gc runs; its sweep meets a layer link that is
    a symlink and leaves it, and still deletes what nothing references."""
    from datetime import timedelta

    from layerfs.passes.gc import GarbageCollector
    from layerfs.storage import Registry, paths

    root = tmp_path / "store"
    driver = FilesystemDriver(root)
    registry = Registry(driver)
    kept = await registry.blobs.put(b"linked, through a symlink")
    await registry.repository("app").layers.link(kept)
    unreferenced = await registry.blobs.put(b"nobody names me")
    link = root / paths.layer_link("app", kept).lstrip("/")
    link.unlink()
    link.symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_bytes(SECRET)
    result = await GarbageCollector(driver, grace=timedelta(0)).run()
    assert result.complete
    assert not await registry.blobs.exists(unreferenced)
    assert link.is_symlink() and (tmp_path / "outside").read_bytes() == SECRET
    assert any("symbolic link" in skipped for skipped in result.skipped), result.skipped


@pytest.mark.parametrize("moved", ["_manifests/revisions/sha256", "_manifests/tags"])
def test_gc_deletes_nothing_when_a_listing_it_marks_from_is_a_symlink(
    tmp_path: Path, store_dir: Path, docker_registry: DockerRegistry, moved: str
) -> None:
    """The revisions (or, to delete untagged ones, the tags) of a repository pushed by
    docker-registry moved outside and linked back: the manifests behind the link are
    unknown, so their blobs must not be taken for unreferenced."""
    image = make_image(seed=11, layers=2)
    skopeo_push(write_oci_layout(image, tmp_path / "layout", "v1"), "v1", docker_registry, "app:v1")
    repo = store_dir / V2 / "repositories/app"
    aside = tmp_path / "aside"
    shutil.move(repo / moved, aside)
    os.symlink(aside, repo / moved)
    blobs = sorted(p for p in (store_dir / V2 / "blobs").rglob("data"))
    gc = layerfs("gc", "--grace", "0s", "--delete-untagged", str(store_dir))
    out = gc.stdout + gc.stderr
    assert "Traceback" not in out
    assert gc.returncode == 1, out
    assert "deleted nothing" in out and f"app/{moved}" in out, out
    assert sorted(p for p in (store_dir / V2 / "blobs").rglob("data")) == blobs
    assert (repo / moved).is_symlink()
