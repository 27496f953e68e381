"""``layerfs du``, ``gc``'s account of what it frees, and ``layerfs prune``, on stores
docker-registry writes (its HTTP API and skopeo), on disk and on S3.

The expected figures are worked out here from what the registry serves (its
manifests and their descriptors' sizes), never from layerfs's own reading."""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerfs.storage import Digest

from ..conftest import Store
from ..images import image_of, random_tar, write_oci_index_layout, write_oci_layout
from ..mounts import LAYERFS, Mount
from ..registry import DockerRegistry, skopeo, skopeo_push
from ..registry_states import ACCEPT_ALL
from ..stores import FilesystemStore
from .test_gc import Built, build_store


def layerfs(
    store: Store, command: str, *args: str, at: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``layerfs COMMAND STORE ARGS...``, or with ``at`` (a mount point of it) in
    place of the store."""
    return subprocess.run(
        [LAYERFS, command, str(at or store.spec), *args],
        capture_output=True, text=True, env={**os.environ, **store.env}, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def run_ok(store: Store, command: str, *args: str, at: Path | None = None) -> str:
    result = layerfs(store, command, *args, at=at)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def closure(registry: DockerRegistry, repo: str, reference: str) -> dict[str, int]:
    """The blobs a manifest keeps, with their sizes, as the registry serves them:
    the manifest itself, its config and layers, and its children's."""
    resp = registry.get_manifest(repo, reference, ACCEPT_ALL)
    assert resp.status == 200, resp.body
    digest = resp.headers["Docker-Content-Digest"]
    doc = json.loads(resp.body)
    blobs = {digest: len(resp.body)}
    for d in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
        blobs[d["digest"]] = d["size"]
    for child in doc.get("manifests", []):
        blobs |= closure(registry, repo, child["digest"])
    return blobs


def total(blobs: dict[str, int]) -> int:
    return sum(blobs.values())


@dataclass
class Expected:
    repos: dict[str, dict[str, int]]  # every revision's closure, joined
    tags: dict[str, dict[str, int]]  # repo:tag -> closure
    untagged: dict[str, int]
    orphan: dict[str, int]
    upload: int  # bytes of the abandoned upload


async def build(store: Store, tmp_path: Path) -> tuple[Built, Expected]:
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    driver = store.driver()
    try:
        built = await build_store(registry, driver, tmp_path)
        registry.patch(registry.start_upload("app/two"), b"u" * 7000)  # abandoned
        tags = {
            ref: closure(registry, *ref.split(":"))
            for ref in ["app/one:v1", "app/one:v2", "app/two:v1", "app/multi:latest"]
        }
        untagged = closure(registry, "app/one", str(built.untagged))
        orphan = {str(built.orphan): 5000}
        repos = {
            "app/one": tags["app/one:v1"] | tags["app/one:v2"] | untagged,
            "app/two": tags["app/two:v1"],
            "app/multi": tags["app/multi:latest"],
        }
        return built, Expected(repos, tags, untagged, orphan, 7000)
    finally:
        registry.stop()
        await driver.aclose()


def unique(mine: dict[str, int], others: list[dict[str, int]]) -> dict[str, int]:
    theirs = set().union(*others)
    return {d: s for d, s in mine.items() if d not in theirs}


async def test_du_accounts_for_every_byte_as_the_registry_serves_it(
    store: Store, tmp_path: Path
) -> None:
    built, want = await build(store, tmp_path)
    report = json.loads(run_ok(store, "du", "--json"))
    rows = {r["repository"]: r for r in report["rows"]}
    assert set(rows) == set(want.repos)
    for name, blobs in want.repos.items():
        only = unique(blobs, [b for n, b in want.repos.items() if n != name])
        assert rows[name]["referenced"] == {"bytes": total(blobs), "blobs": len(blobs)}
        assert rows[name]["unique"] == {"bytes": total(only), "blobs": len(only)}
        shared = total(blobs) - total(only)
        assert rows[name]["shared"] == {"bytes": shared, "blobs": len(blobs) - len(only)}
    # the layer app/one:v1 and app/two:v1 share is shared, and only that
    assert rows["app/two"]["shared"]["blobs"] == 1
    # sorted as du | sort -h: the smallest first
    sizes = [r["referenced"]["bytes"] for r in report["rows"]]
    assert sizes == sorted(sizes)

    summary = report["summary"]
    tagged: dict[str, int] = {}
    for blobs in want.tags.values():
        tagged |= blobs
    untagged_only = {d: s for d, s in want.untagged.items() if d not in tagged}
    assert summary["tagged"] == {"bytes": total(tagged), "blobs": len(tagged)}
    assert summary["untagged"] == {"bytes": total(untagged_only), "blobs": len(untagged_only)}
    assert summary["unreferenced"] == {"bytes": 5000, "blobs": 1}
    stored = total(tagged) + total(untagged_only) + 5000
    assert summary["blobs"] == {"bytes": stored, "blobs": len(tagged) + len(untagged_only) + 1}
    assert summary["uploads"]["bytes"] == 7000 and summary["uploads"]["count"] == 1
    (upload,) = summary["uploads"]["items"]
    assert upload["repository"] == "app/two" and 0 <= upload["age_seconds"] < 600
    assert summary["total_bytes"] == stored + 7000
    assert summary["odd"] == []
    assert built.orphan  # the one unreferenced blob is the orphan the build pushed


async def test_du_by_tag_and_by_manifest(store: Store, tmp_path: Path) -> None:
    built, want = await build(store, tmp_path)
    by_tag = json.loads(run_ok(store, "du", "--json", "--by", "tag"))["rows"]
    rows = {f"{r['repository']}:{r['tag']}": r for r in by_tag}
    assert set(rows) == set(want.tags)
    for ref, blobs in want.tags.items():
        only = unique(blobs, [b for r, b in want.tags.items() if r != ref])
        assert rows[ref]["referenced"]["bytes"] == total(blobs)
        assert rows[ref]["unique"] == {"bytes": total(only), "blobs": len(only)}

    by_manifest = json.loads(run_ok(store, "du", "--json", "--by", "manifest"))["rows"]
    manifests = {(r["repository"], r["manifest"]): r for r in by_manifest}
    assert ("app/one", str(built.untagged)) in manifests
    for child in built.children:  # an index's children are revisions of their own
        row = manifests[("app/multi", str(child))]
        assert row["unique"]["blobs"] == 0  # the index references everything they do
    (index_row,) = (
        row
        for (repo, m), row in manifests.items()
        if repo == "app/multi" and Digest.parse(m) not in built.children
    )
    assert index_row["unique"]["blobs"] == 1  # its own manifest blob alone

    # REPO[:TAG] arguments pick rows; an unknown one is a usage error
    picked = json.loads(run_ok(store, "du", "--json", "--by", "tag", "app/one:v2"))["rows"]
    assert [(r["repository"], r["tag"]) for r in picked] == [("app/one", "v2")]
    for bad in ["no/such", "app/one:nosuch"]:
        result = layerfs(store, "du", bad)
        assert result.returncode == 2 and "no " in result.stderr, result.stderr


def test_du_text_is_human_and_sorts_like_du(store_dir: Path) -> None:
    from layerfs.cli.space import du_size

    assert [du_size(n) for n in [0, 1023, 1024, 1536, 10 * 1024 + 1, 5 << 30]] == [
        "0", "1023", "1.0K", "1.5K", "11K", "5.0G",
    ]  # fmt: skip
    assert du_size(123456, exact=True) == "123456"
    sizes = ["1023", "1.0K", "1.5K", "11K", "5.0G"]
    lines = "\n".join(reversed(sizes))
    out = subprocess.run(["sort", "-h"], input=lines, capture_output=True, text=True)
    assert out.stdout.split() == sizes


async def test_du_text_output(store: Store, tmp_path: Path) -> None:
    _, want = await build(store, tmp_path)
    lines = run_ok(store, "du", "-b").splitlines()
    assert lines[0].split() == ["REFERENCED", "UNIQUE", "SHARED", "BLOBS", "REPOSITORY"]
    one = next(line for line in lines if line.endswith("  app/one"))
    assert int(one.split()[0]) == total(want.repos["app/one"])
    assert any(
        line.strip().startswith("5000  unreferenced (1 blob): freed by gc") for line in lines
    )
    assert any("uploads (1): freed by purge-uploads" in line for line in lines)


async def test_du_through_a_mount_equals_du_of_its_store(
    store: Store, mount: Mount, tmp_path: Path
) -> None:
    await build(store, tmp_path)
    of_store = json.loads(run_ok(store, "du", "--json"))
    of_mount = json.loads(run_ok(store, "du", "--json", at=mount.mountpoint))
    for report in (of_store, of_mount):
        for item in report["summary"]["uploads"]["items"]:
            del item["age_seconds"]
    assert of_mount == of_store


async def test_gc_frees_what_du_says_and_says_so_per_repository(
    store: Store, tmp_path: Path
) -> None:
    built, want = await build(store, tmp_path)
    summary = json.loads(run_ok(store, "du", "--json"))["summary"]
    plain = json.loads(run_ok(store, "gc", "--dry-run", "--json", "--grace", "0s"))
    assert plain["total"]["bytes"] == summary["unreferenced"]["bytes"]
    untagged = json.loads(
        run_ok(store, "gc", "--dry-run", "--json", "--grace", "0s", "--delete-untagged")
    )
    freed = summary["unreferenced"]["bytes"] + summary["untagged"]["bytes"]
    assert untagged["total"]["bytes"] == freed
    blobs = summary["unreferenced"]["blobs"] + summary["untagged"]["blobs"]
    assert untagged["total"]["blobs"] == blobs
    # all of it was app/one's: its untagged manifest and the orphan it linked
    assert set(untagged["repositories"]) == {"app/one", "app/two"}
    assert untagged["repositories"]["app/one"]["bytes"] == freed
    assert untagged["repositories"]["app/one"]["manifests"] == 1
    assert untagged["repositories"]["app/two"] == {  # the dangling link build_store made
        "bytes": 0, "blobs": 0, "manifests": 0, "layer_links": 1,
    }  # fmt: skip

    text = run_ok(store, "gc", "--grace", "0s", "--delete-untagged")
    table = text[text.index("REPOSITORY") :].splitlines()
    assert table[0].split() == ["REPOSITORY", "BYTES", "BLOBS", "MANIFESTS", "LAYER", "LINKS"]
    assert table[-2].split()[0] == "total"
    after = json.loads(run_ok(store, "du", "--json"))["summary"]
    assert after["blobs"]["bytes"] == summary["blobs"]["bytes"] - freed
    assert after["untagged"]["bytes"] == after["unreferenced"]["bytes"] == 0
    assert built.untagged


# prune ---------------------------------------------------------------------------
def tag_names(registry: DockerRegistry, repo: str) -> list[str]:
    out = skopeo("list-tags", "--tls-verify=false", f"docker://{registry.host}/{repo}").stdout
    return sorted(json.loads(out)["Tags"])


def pull(registry: DockerRegistry, reference: str, dest: Path) -> None:
    skopeo(
        "copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/{reference}",
        f"oci:{dest}:t",
    )  # fmt: skip


def push_tags(registry: DockerRegistry, tmp_path: Path, repo: str, tags: list[str]) -> None:
    for n, tag in enumerate(tags):
        image = image_of([random_tar(random.Random(f"{repo}{n}"))], seed=40 + n)
        layout = write_oci_layout(image, tmp_path / f"p{repo}{n}".replace("/", "_"), "t")
        skopeo_push(layout, "t", registry, f"{repo}:{tag}")


def pushed_store(store_dir: Path, tmp_path: Path, tags: list[str]) -> FilesystemStore:
    """A store on disk holding ``app/a`` with these tags, pushed through docker-registry."""
    store = FilesystemStore(store_dir)
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        push_tags(registry, tmp_path, "app/a", tags)
    finally:
        registry.stop()
    return store


def manifest_status(registry: DockerRegistry, repo: str, reference: str) -> int:
    return registry.get_manifest(repo, reference, ACCEPT_ALL).status


def digest_of(registry: DockerRegistry, repo: str, tag: str) -> str:
    resp = registry.get_manifest(repo, tag, ACCEPT_ALL)
    assert resp.status == 200
    return resp.headers["Docker-Content-Digest"]


async def test_prune_keep_last_as_the_registry_then_serves(store: Store, tmp_path: Path) -> None:
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        push_tags(registry, tmp_path, "app/a", ["v1", "v2", "v3", "v4"])
        push_tags(registry, tmp_path, "other/b", ["v1"])
        gone = {t: digest_of(registry, "app/a", t) for t in ["v1", "v2"]}
        dry = run_ok(store, "prune", "app/*", "--keep-last", "2", "--dry-run")
        assert "would delete tag app/a:v1" in dry and "would delete tag app/a:v2" in dry
        assert "2 tags and 2 manifests to delete in 1 repository" in dry
        assert tag_names(registry, "app/a") == ["v1", "v2", "v3", "v4"]  # dry: nothing gone

        refused = layerfs(store, "prune", "app/*", "--keep-last", "2")  # not a terminal
        assert refused.returncode == 2 and "--yes" in refused.stderr
        assert tag_names(registry, "app/a") == ["v1", "v2", "v3", "v4"]

        out = run_ok(store, "prune", "app/*", "--keep-last", "2", "--yes")
        assert "deleted 2 tags and 2 manifests" in out
        # the registry serving the store sees it at once
        assert tag_names(registry, "app/a") == ["v3", "v4"]
        assert tag_names(registry, "other/b") == ["v1"]
        for tag, digest in gone.items():
            assert manifest_status(registry, "app/a", tag) == 404
            assert manifest_status(registry, "app/a", digest) == 404
        for tag in ["v3", "v4"]:
            pull(registry, f"app/a:{tag}", tmp_path / f"pulled-{tag}")
        # and gc then frees what only they referenced
        freed = json.loads(run_ok(store, "gc", "--json", "--grace", "0s"))
        assert freed["total"]["blobs"] == 6  # two manifests, their configs and layers
    finally:
        registry.stop()


async def test_prune_keeps_what_a_remaining_tag_or_index_needs(
    store: Store, tmp_path: Path
) -> None:
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        arches = {
            a: image_of([random_tar(random.Random(i))], seed=60 + i, arch=a)
            for i, a in enumerate(["amd64", "arm64"])
        }
        write_oci_index_layout(arches, tmp_path / "multi", "t")
        for tag in ["multi", "again"]:
            skopeo(
                "copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'multi'}:t",
                f"docker://{registry.host}/app/m:{tag}",
            )  # fmt: skip
        index = digest_of(registry, "app/m", "multi")
        body = registry.get_manifest("app/m", index, ACCEPT_ALL).body
        children = [m["digest"] for m in json.loads(body)["manifests"]]
        # tag one child on its own
        child = registry.get_manifest("app/m", children[0], ACCEPT_ALL)
        registry.request("PUT", "/v2/app/m/manifests/amd", child.body,
                         {"Content-Type": json.loads(child.body)["mediaType"]})  # fmt: skip
        assert digest_of(registry, "app/m", "amd") == children[0]

        # "multi" goes, but "again" names the same index: nothing but the tag goes
        out = run_ok(store, "prune", "app/m", "--keep-tags", "again|amd", "--yes")
        assert "deleted 1 tag and 0 manifests" in out
        assert tag_names(registry, "app/m") == ["again", "amd"]
        pull(registry, "app/m:again", tmp_path / "again")

        # now the index goes with "again"; the child "amd" names stays, the other goes
        out = run_ok(store, "prune", "app/m", "--keep-tags", "amd", "--yes")
        assert "deleted 1 tag and 2 manifests" in out
        assert manifest_status(registry, "app/m", index) == 404
        assert manifest_status(registry, "app/m", children[1]) == 404
        assert manifest_status(registry, "app/m", children[0]) == 200
        pull(registry, "app/m:amd", tmp_path / "amd")
    finally:
        registry.stop()


async def test_prune_writes_what_the_registrys_delete_writes(tmp_path: Path) -> None:
    from ..registry_states import snapshot

    layouts = []
    for name in ["by-registry", "by-prune"]:
        root = tmp_path / name
        root.mkdir()
        store = FilesystemStore(root)
        work = tmp_path / f"w-{name}"
        work.mkdir()
        registry = DockerRegistry(work, store.registry_storage()).start()
        try:
            push_tags(registry, work, "app/a", ["old", "new"])
            digest = digest_of(registry, "app/a", "old")
            if name == "by-registry":
                resp = registry.request("DELETE", f"/v2/app/a/manifests/{digest}")
                assert resp.status == 202, resp.body
            else:
                run_ok(store, "prune", "app/a", "--keep-tags", "new", "--yes")
        finally:
            registry.stop()
        driver = store.driver()
        try:
            layouts.append(await snapshot(driver))
        finally:
            await driver.aclose()
    assert layouts[0] == layouts[1]
    assert not any(item[:3] == ("tag-index", "app/a", "old") for item in layouts[1])
    revision = f"docker/registry/v2/repositories/app/a/_manifests/revisions/sha256/{digest[7:]}"
    assert (tmp_path / "by-prune" / revision).is_dir()  # as the registry leaves it
    assert not (tmp_path / "by-prune" / revision / "link").exists()


def test_prune_older_than_takes_the_current_links_age(store_dir: Path, tmp_path: Path) -> None:
    store = FilesystemStore(store_dir)
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        push_tags(registry, tmp_path, "app/a", ["v1", "v2"])
        link = store_dir / "docker/registry/v2/repositories/app/a/_manifests/tags/v1/current/link"
        old = link.stat().st_mtime - 40 * 86400
        os.utime(link, (old, old))
        out = run_ok(store, "prune", "app/a", "--older-than", "30d", "--yes")
        assert "deleted 1 tag and 1 manifest" in out and "app/a:v1" in out
        assert tag_names(registry, "app/a") == ["v2"]
    finally:
        registry.stop()


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/*", "--keep-last", "1"], "no repository matches"),
        (["app/*", "--keep-tags", "(unclosed"], "no regular expression"),
        (["app/*", "--older-than", "soon"], "invalid duration"),
        (["app/*", "--keep-last", "-1"], "0 or more"),
        (["app/*"], "give a policy"),
    ],
)
def test_prune_bad_input_is_a_usage_error(
    store_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    store = pushed_store(store_dir, tmp_path, ["v1"])
    result = layerfs(store, "prune", *args, "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert (store_dir / "docker/registry/v2/repositories/app/a/_manifests/tags/v1").is_dir()


def on_a_terminal(store: Store, command: str, *args: str, answer: bytes = b"") -> str:
    """Run ``layerfs COMMAND STORE ARGS`` with a pseudo-terminal for its input and
    stderr (stdout stays a pipe), ``answer`` typed in; returns what the terminal showed
    and stdout."""
    import pty

    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [LAYERFS, command, store.spec, *args], stdin=follower, stderr=follower,
            stdout=subprocess.PIPE, env={**os.environ, **store.env},
        )  # fmt: skip
        os.close(follower)
        if answer:
            os.write(leader, answer)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other side closed
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, shown + out
        return (shown + out).decode(errors="replace")
    finally:
        os.close(leader)


async def test_du_shows_progress_and_prune_asks_on_a_terminal(store: Store, tmp_path: Path) -> None:
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        push_tags(registry, tmp_path, "app/a", ["v1", "v2"])
        shown = on_a_terminal(store, "du")
        assert "du: 100%" in shown and "1/1" in shown  # the bar, on the terminal
        shown = on_a_terminal(store, "prune", "app/a", "--keep-last", "1", answer=b"n\n")
        assert "delete 1 tag and 1 manifest? [y/N]" in shown and "nothing deleted" in shown
        assert tag_names(registry, "app/a") == ["v1", "v2"]
        shown = on_a_terminal(store, "prune", "app/a", "--keep-last", "1", answer=b"y\n")
        assert "deleted 1 tag and 1 manifest" in shown
        assert tag_names(registry, "app/a") == ["v2"]
    finally:
        registry.stop()


def test_prune_deletes_nothing_from_a_store_it_cannot_read_whole(
    store_dir: Path, tmp_path: Path
) -> None:
    store = FilesystemStore(store_dir)
    registry = DockerRegistry(tmp_path, store.registry_storage()).start()
    try:
        push_tags(registry, tmp_path, "app/a", ["v1", "v2", "v3"])
        kept = digest_of(registry, "app/a", "v3")
    finally:
        registry.stop()
    repo = store_dir / "docker/registry/v2/repositories/app/a/_manifests"
    (repo / "revisions/sha256" / kept[7:] / "link").write_text("not a digest")
    before = sorted(p.name for p in (repo / "tags").iterdir())
    result = layerfs(store, "prune", "app/a", "--keep-last", "1", "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deleted nothing" in result.stderr and kept[7:] in result.stderr
    assert sorted(p.name for p in (repo / "tags").iterdir()) == before == ["v1", "v2", "v3"]


def test_du_names_what_it_cannot_account_for(store_dir: Path, tmp_path: Path) -> None:
    store = pushed_store(store_dir, tmp_path, ["v1"])
    repositories = store_dir / "docker/registry/v2/repositories"
    outside = tmp_path / "outside"
    (outside / "_layers").mkdir(parents=True)
    (repositories / "linked").symlink_to(outside)  # a repository that is a symlink
    tag = repositories / "app/a/_manifests/tags/bad/current"
    tag.mkdir(parents=True)
    (tag / "link").write_text("sha256:" + "0" * 64)  # a tag naming no manifest
    report = json.loads(run_ok(store, "du", "--json"))
    odd = {item["path"]: item["why"] for item in report["summary"]["odd"]}
    assert any(p.endswith("/repositories/linked") for p in odd), odd
    assert any(p.endswith("tags/bad/current/link") and "no manifest" in w for p, w in odd.items())
    assert [r["repository"] for r in report["rows"]] == ["app/a"]  # what it could read


async def test_the_child_processes_read_a_registry_store_as_the_threads_do(
    tmp_path: Path,
) -> None:
    """On a store docker-registry wrote (a moved tag, an untagged manifest, an index,
    an orphan blob, a dangling layer link, an abandoned upload), du and fsck with
    every blob stated by the size child, and fsck's repositories walked and read by
    the group child, equal those read in worker threads, and du's figures are the
    registry's."""
    from layerfs.drivers import FilesystemDriver
    from layerfs.passes.fsck import fsck
    from layerfs.passes.usage import Usage, read_store

    store = FilesystemStore(tmp_path / "store")
    _, want = await build(store, tmp_path)

    async def passes(in_process: bool):  # type: ignore[no-untyped-def]
        driver = FilesystemDriver(store.root)
        driver.sizes_in_process_from = 1 if in_process else 1 << 62
        driver.groups_in_process_from = 0 if in_process else 1 << 62
        usage = Usage(await read_store(driver))
        report = await fsck(driver, check_data=False)
        findings = [(f.kind, f.path) for f in report.findings]
        return usage.rows("repo"), usage.summary(), usage.odd(), findings, report.blob_bytes

    in_a_child, in_threads = await passes(True), await passes(False)
    assert in_a_child == in_threads
    rows, summary, odd, findings, _ = in_a_child
    assert {r.repository: r.referenced.bytes for r in rows} == {
        name: total(blobs) for name, blobs in want.repos.items()
    }
    assert summary.unreferenced.bytes == 5000 and summary.uploads.bytes == 7000
    assert odd == [] and findings == []
