"""layerfs against docker-registry 2.8 on stores only the registry wrote.

A store is built through the registry's HTTP API, skopeo and raw HTTP, reaching
every state its API can leave (``registry_states.build``), on disk and on S3. Three
variants of it are checked: as the API left it, after ``docker-registry
garbage-collect``, and after ``garbage-collect -m``. On every variant: fsck finds
nothing (after ``-m``, exactly the damage ``-m`` does to a multi-arch image), gc
deletes the blobs the registry's collector deletes, ``gc --delete-untagged`` deletes
nothing ``-m`` keeps, every tag still pulls after layerfs's gc, a read-only mount
reads every file, and export + import keep every manifest digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from layerfs.drivers import FilesystemDriver
from layerfs.passes.fsck import fsck
from layerfs.storage import Digest, Registry, parse_manifest, paths

from ..conftest import S3_BUCKET
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry
from ..registry_states import (
    RegistryMade,
    build,
    clone,
    schema1_able_registry,
    snapshot,
)
from ..seaweed import SeaweedFS
from ..stores import FilesystemStore, S3Store

Store = FilesystemStore | S3Store
VARIANTS = ["api", "after-gc", "after-gc-m"]


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Store, RegistryMade, Path]:
    """One store per backend, built by the registry alone; tests work on clones."""
    workdir = tmp_path_factory.mktemp(f"differential-{request.param}")
    if request.param == "s3":
        gateway: SeaweedFS = request.getfixturevalue("seaweedfs")
        store: Store = S3Store(gateway, S3_BUCKET, f"differential-{workdir.name}")
    else:
        (workdir / "store").mkdir()
        store = FilesystemStore(workdir / "store")
    registry = schema1_able_registry(workdir, store.registry_storage()).start()
    try:
        made = build(registry, workdir)
    finally:
        registry.stop()
    return store, made, workdir


def registry_for(store: Store, workdir: Path) -> DockerRegistry:
    return schema1_able_registry(workdir, store.registry_storage())


def run_layerfs(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LAYERFS, *args], capture_output=True, text=True, env={**os.environ, **store.env},
        timeout=300,
    )  # fmt: skip


def variant(
    built: tuple[Store, RegistryMade, Path], name: str, tmp_path: Path, twin: str = "a"
) -> Store:
    """A clone of the built store, in the state the variant names."""
    store, _, _ = built
    copy = clone(store, f"{name}-{twin}-{tmp_path.name}", tmp_path)
    if name != "api":
        flags = ["-m"] if name == "after-gc-m" else []
        result = registry_for(copy, tmp_path).garbage_collect(*flags)
        assert result.returncode == 0, result.stdout + result.stderr
    return copy


@asynccontextmanager
async def opened(store: Store) -> AsyncIterator[Registry]:
    """The store through layerfs's storage core, closed afterwards."""
    driver = store.driver()
    try:
        yield Registry(driver)
    finally:
        await driver.aclose()


async def store_snapshot(store: Store) -> set[tuple[str, ...]]:
    async with opened(store) as registry:
        return await snapshot(registry.driver)


def blobs_and_revisions(items: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    return {i for i in items if i[0] in ("blob", "revision")}


def everything(store: Store) -> dict[str, object]:
    """Every file with its content's hash, and every pending write: 'nothing changed'."""
    if isinstance(store, FilesystemStore):
        found: dict[str, object] = {}
        for rel in store.files("docker"):
            found[rel] = hashlib.sha256(store.read(rel)).hexdigest()
        return found
    return {rel: store.version(rel) for rel in store.files("docker")} | {
        f"pending:{key}": True for key in store.pending_writes()
    }


async def index_children(store: Store, repo: str, tag: str) -> set[Digest]:
    async with opened(store) as registry:
        index = await registry.repository(repo).tags.resolve(tag)
        payload = await registry.blobs.get(index)
        return {entry.digest for entry in parse_manifest(payload).manifests}


@pytest.mark.parametrize("name", VARIANTS)
async def test_fsck_agrees_with_the_registry(built, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = variant(built, name, tmp_path)
    before = everything(store)
    result = run_layerfs(store, "fsck", store.spec)
    assert everything(store) == before  # a check changes nothing
    if isinstance(store, FilesystemStore):  # S3 lists the whole store at once: no groups read
        in_a_child, in_threads = await _fsck_report(store, True), await _fsck_report(store, False)
        assert in_a_child == in_threads
        assert f"{len(in_a_child[0])} problems" in result.stdout
    if name != "after-gc-m":
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 problems" in result.stdout
        return
    # registry 2.8's -m deletes the children of a tagged multi-arch image (no tag
    # names them) and then their layers; the indexes can no longer be pulled whole
    assert result.returncode == 4, result.stdout + result.stderr
    findings = [line for line in result.stdout.splitlines() if line.startswith("manifest-")]
    for tag in ("oci", "list"):
        index = paths.manifest_revision_link("s/multi", await tag_digest(store, "s/multi", tag))
        children = await index_children(store, "s/multi", tag)
        assert any(
            f.startswith(f"manifest-unlinked-blob: {index}:") and all(str(c) in f for c in children)
            for f in findings
        ), findings
    assert len(findings) == 2 and "2 problems" in result.stdout


async def _fsck_report(store: FilesystemStore, in_a_child: bool) -> tuple:
    """fsck's findings and counts, with the repositories walked and read by the group
    child (``drivers/groupprocess.py``) or in a worker thread."""
    driver = FilesystemDriver(str(store.root))
    driver.groups_in_process_from = 0 if in_a_child else 1 << 62
    report = await fsck(driver, check_data=False)
    findings = [(f.kind, f.path, f.detail) for f in report.findings]
    counts = (report.repositories, report.manifests, report.links, report.uploads)
    return findings, counts, dict(report.registry_states)


async def tag_digest(store: Store, repo: str, tag: str) -> Digest:
    async with opened(store) as registry:
        return await registry.repository(repo).tags.resolve(tag)


@pytest.mark.parametrize("name", VARIANTS)
async def test_gc_deletes_the_blobs_the_registry_deletes(built, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    by_registry, by_layerfs = variant(built, name, tmp_path), variant(built, name, tmp_path, "b")
    before = await store_snapshot(by_layerfs)
    assert registry_for(by_registry, tmp_path).garbage_collect().returncode == 0
    result = run_layerfs(by_layerfs, "gc", "--grace", "0s", by_layerfs.spec)
    assert result.returncode == 0, result.stdout + result.stderr
    registry_deleted = before - await store_snapshot(by_registry)
    layerfs_deleted = before - await store_snapshot(by_layerfs)
    blobs = {i for i in registry_deleted if i[0] == "blob"}
    assert {i for i in layerfs_deleted if i[0] == "blob"} == blobs
    if name == "api":  # the orphans: the monolithic upload's blob and the deleted manifests'
        assert blobs, "the store holds unreferenced blobs"


@pytest.mark.parametrize("name", VARIANTS)
async def test_du_counts_as_unreferenced_what_the_registrys_gc_deletes(  # type: ignore[no-untyped-def]
    built, name: str, tmp_path: Path
) -> None:
    """du on a store the registry wrote, in each state: its unreferenced part is the
    blobs docker-registry garbage-collect deletes, to the byte, and its three parts
    cover the blob store."""
    by_registry, by_layerfs = variant(built, name, tmp_path), variant(built, name, tmp_path, "b")
    result = run_layerfs(by_layerfs, "du", "--json", by_layerfs.spec)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    before = await store_snapshot(by_registry)
    assert registry_for(by_registry, tmp_path).garbage_collect().returncode == 0
    deleted = {i[1] for i in before - await store_snapshot(by_registry) if i[0] == "blob"}
    async with opened(by_layerfs) as registry:
        sizes = {
            str(d): (await registry.blobs.stat(d)).size for d in await registry.blobs.digests()
        }
    assert summary["unreferenced"] == {
        "bytes": sum(sizes[d] for d in deleted), "blobs": len(deleted),
    }  # fmt: skip
    parts = [summary[p] for p in ("tagged", "untagged", "unreferenced")]
    assert sum(p["bytes"] for p in parts) == summary["blobs"]["bytes"] == sum(sizes.values())
    assert sum(p["blobs"] for p in parts) == len(sizes)
    # what the registry's own states leave is no odd entry; -m breaks indexes, which is
    odd = summary["odd"]
    if name == "after-gc-m":
        assert odd and all("not stored" in o["why"] for o in odd), odd
    else:
        assert odd == [], odd
    assert summary["uploads"]["count"] >= 2  # the abandoned ones (the cancelled one is gone)


@pytest.mark.parametrize("name", VARIANTS)
async def test_gc_delete_untagged_keeps_what_the_registry_keeps(  # type: ignore[no-untyped-def]
    built, name: str, tmp_path: Path
) -> None:
    by_registry, by_layerfs = variant(built, name, tmp_path), variant(built, name, tmp_path, "b")
    before = await store_snapshot(by_layerfs)
    untagged = await byd_digest(by_layerfs) if name == "api" else None
    assert registry_for(by_registry, tmp_path).garbage_collect("-m").returncode == 0
    result = run_layerfs(by_layerfs, "gc", "--grace", "0s", "--delete-untagged", by_layerfs.spec)
    assert result.returncode == 0, result.stdout + result.stderr
    registry_deleted = blobs_and_revisions(before - await store_snapshot(by_registry))
    layerfs_deleted = blobs_and_revisions(before - await store_snapshot(by_layerfs))
    assert layerfs_deleted <= registry_deleted
    if name == "api":
        # both delete the manifest pushed by digest only; registry 2.8 also deletes
        # the multi-arch images' children, which layerfs keeps for their indexes
        assert ("revision", "s/byd", str(untagged)) in layerfs_deleted
        kept_children = registry_deleted - layerfs_deleted
        assert {i[1] for i in kept_children if i[0] == "revision"} == {"s/multi"}


# a tag's current link as a registry writing it in place, or a hand, can leave it
BROKEN_TAG_LINKS = {
    "missing": None,
    "empty": b"",  # truncated, not yet written
    "not a digest": b"latest",
    "naming no manifest held": str(Digest.of(b"held by no revision")).encode(),
}


async def break_tag_link(store: Store, content: bytes | None) -> tuple[str, str]:
    """Put the first tag (by repository and name) in that state; returns it."""
    async with opened(store) as registry:
        tags = [(n, t) for n in await registry.repositories()
                for t in await registry.repository(n).tags.list()]  # fmt: skip
        name, tag = min(tags)
        link = paths.tag_current_link(name, tag)
        if content is None:
            await registry.driver.delete(link)
        else:
            await registry.driver.put_content(link, content)
    return name, tag


@pytest.mark.parametrize("state", list(BROKEN_TAG_LINKS))
async def test_gc_delete_untagged_beside_a_broken_tag_does_what_the_registry_does(  # type: ignore[no-untyped-def]
    built, state: str, tmp_path: Path
) -> None:
    """Where the collector cannot read a tag, it marks nothing and deletes nothing;
    layerfs gc, which would otherwise take the tag's manifest for untagged, neither."""
    by_registry, by_layerfs = variant(built, "api", tmp_path), variant(built, "api", tmp_path, "b")
    for store in (by_registry, by_layerfs):
        broken = await break_tag_link(store, BROKEN_TAG_LINKS[state])
    before = await store_snapshot(by_layerfs)
    theirs = registry_for(by_registry, tmp_path).garbage_collect("-m")
    ours = run_layerfs(by_layerfs, "gc", "--grace", "0s", "--delete-untagged", by_layerfs.spec)
    registry_deleted = before - await store_snapshot(by_registry)
    layerfs_deleted = before - await store_snapshot(by_layerfs)
    if state in ("empty", "not a digest"):  # unreadable: the collector fails its mark
        assert theirs.returncode != 0 and registry_deleted == set(), theirs.stdout
        assert ours.returncode != 0 and layerfs_deleted == set(), ours.stdout + ours.stderr
        assert f"unreadable: {broken[0]}:{broken[1]}: link file" in ours.stderr
    else:  # a tag without its link, or naming nothing held, names nothing to both
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        assert ours.returncode == 0, ours.stdout + ours.stderr
        assert blobs_and_revisions(layerfs_deleted) <= blobs_and_revisions(registry_deleted)
        assert blobs_and_revisions(layerfs_deleted), "the tag's manifest is untagged now"


async def byd_digest(store: Store) -> Digest:
    """The manifest s/byd holds that no tag names (the artifact's subject)."""
    async with opened(store) as registry:
        repo = registry.repository("s/byd")
        held = await repo.manifests.digests()
        tagged = {await repo.tags.resolve(t) for t in await repo.tags.list()}
        (untagged,) = (d for d in held if d not in tagged)
        return untagged


def pull(registry: DockerRegistry, reference: str, out: Path) -> str:
    """Pull every platform of ``reference``; returns "" or skopeo's complaint."""
    out.mkdir(parents=True)
    result = subprocess.run(
        [
            "skopeo", "--insecure-policy", "copy", "--all", "--src-tls-verify=false",
            f"docker://{registry.host}/{reference}", f"dir:{out}",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stderr


@pytest.mark.parametrize("name", VARIANTS)
async def test_every_tag_pulls_after_layerfs_gc(built, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = variant(built, name, tmp_path)
    made: RegistryMade = built[1]
    registry = registry_for(store, tmp_path).start()
    try:
        before = {
            t: pull(registry, t, tmp_path / "before" / t.replace(":", "_")) for t in made.tags
        }
        broken = {t for t, error in before.items() if error}
        if name == "after-gc-m":  # -m left the multi-arch images without their children
            assert broken == {"s/multi:oci", "s/multi:list"}
            assert all("manifest unknown" in before[t] for t in broken), before
        else:
            assert broken == set(), before
        result = run_layerfs(store, "gc", "--grace", "0s", "--delete-untagged", store.spec)
        assert result.returncode == 0, result.stdout + result.stderr
        for tag in set(made.tags) - broken:
            assert pull(registry, tag, tmp_path / "after" / tag.replace(":", "_")) == ""
    finally:
        registry.stop()


@pytest.mark.parametrize("name", VARIANTS)
def test_a_read_only_mount_reads_every_file(built, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = variant(built, name, tmp_path)
    before = everything(store)
    mnt = tmp_path / "mnt"
    mounted = Mount(store.spec, mnt, tmp_path / "ro.log", "-o", "ro", env=store.env).start()
    try:
        listed = subprocess.run(
            ["find", str(mnt), "-type", "f"], capture_output=True, text=True, timeout=120
        )
        assert listed.returncode == 0 and listed.stderr == "", listed.stderr
        files = listed.stdout.split()
        assert len(files) > 50
        for path in files:
            data = Path(path).read_bytes()
            rel = os.path.relpath(path, mnt)
            if rel.startswith("blobs/sha256/"):
                assert hashlib.sha256(data).hexdigest() == rel.split("/")[3], rel
    finally:
        mounted.stop()
    assert everything(store) == before  # reading changed nothing


@pytest.mark.parametrize("name", VARIANTS)
def test_export_then_import_keeps_every_digest(built, name: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = variant(built, name, tmp_path)
    made: RegistryMade = built[1]
    fresh = FilesystemStore(tmp_path / "fresh")
    exported = 0
    for reference in made.tags:
        layout = f"oci:{tmp_path / reference.replace('/', '_').replace(':', '_')}:t"
        out = run_layerfs(store, "export", store.spec, reference, layout)
        if reference in made.schema1_tags:
            assert out.returncode == 1 and "Docker schema1" in out.stderr, out.stderr
            assert "Traceback" not in out.stderr
            continue
        if name == "after-gc-m" and reference.startswith("s/multi:"):
            assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
            continue  # its children are gone: nothing whole to export
        assert out.returncode == 0, out.stderr
        back = run_layerfs(fresh, "import", layout, fresh.spec, reference)
        assert back.returncode == 0, back.stderr
        exported += 1
        repo, tag = reference.split(":")
        original = run_digest(store, repo, tag)
        assert run_digest(fresh, repo, tag) == original
    assert exported >= 4


def run_digest(store: Store, repo: str, tag: str) -> str:
    return str(trio.run(tag_digest, store, repo, tag))


def test_the_builder_reaches_every_state(built) -> None:  # type: ignore[no-untyped-def]
    """The list the closing note and README name; a state dropped from the builder
    fails here."""
    assert built[1].states == [
        "schema2 manifest pushed by tag; the tag pushed twice (moved)",
        "OCI image manifest with an empty layer",
        "schema1 manifest (signed push, stored unsigned)",
        "OCI index and Docker manifest list, with their children",
        "manifest pushed by digest (untagged)",
        "OCI artifact manifest with artifactType and subject",
        "monolithic upload (POST, PUT with the body)",
        "chunked upload (POST, PATCH, PATCH, PATCH, PUT)",
        "cross-repository blob mount (?mount=&from=), used by an image",
        "blob deleted by digest (its layer link removed)",
        "upload cancelled (DELETE)",
        "upload abandoned after a PATCH",
        "upload abandoned in the middle of a PATCH",
        "manifests deleted by digest (a tagged one, and one a moved tag had named)",
    ]
