"""The scale section of scripts/bench: a generated store in the registry's exact layout
(blobs with valid digests, layer links, manifests that reference them, tags with their
index entries, and a repository busy with uploads), browsed through the mount and on
the store directory itself with the same commands; fsck and gc beside
``docker-registry garbage-collect --dry-run``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import trio

from tests.mounts import Mount
from tests.registry import DockerRegistry
from tests.seaweed import SeaweedFS

V2 = "docker/registry/v2"
LAYERFS = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "layerfs")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TAGS_PER_REPO = 10  # each tag names its own image: a manifest, a config and its layers
BUSY = "busy/app"  # the repository holding the uploads


@dataclass(frozen=True)
class Scale:
    blobs: int = 50_000
    repositories: int = 500
    uploads: int = 1_000

    @property
    def layers_per_image(self) -> int:
        per_repo = self.blobs // self.repositories
        return max(1, per_repo // TAGS_PER_REPO - 2)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _blob(v2: Path, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    _write(v2 / "blobs/sha256" / hexd[:2] / hexd / "data", data)
    return hexd


def _link(directory: Path, hexd: str) -> None:
    _write(directory / "sha256" / hexd / "link", f"sha256:{hexd}".encode())


def generate(root: Path, scale: Scale) -> int:
    """Write the store; returns the number of blobs."""
    v2 = root / V2
    rng = os.urandom
    count = 0
    for r in range(scale.repositories):
        repo = v2 / "repositories" / f"team{r % 50}" / f"app{r}"
        for t in range(TAGS_PER_REPO):
            layers = [_blob(v2, rng(64 + (t * 7 + r) % 256)) for _ in range(scale.layers_per_image)]
            config = json.dumps({"architecture": "amd64", "os": "linux", "n": [r, t]}).encode()
            config_hex = _blob(v2, config)
            manifest = json.dumps({
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": f"sha256:{config_hex}", "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": f"sha256:{h}", "size": 64 + (t * 7 + r) % 256}
                           for h in layers],
            }).encode()  # fmt: skip
            manifest_hex = _blob(v2, manifest)
            for h in (*layers, config_hex):
                _link(repo / "_layers", h)
            _link(repo / "_manifests/revisions", manifest_hex)
            tag = repo / "_manifests/tags" / f"v{t}"
            _write(tag / "current/link", f"sha256:{manifest_hex}".encode())
            _link(tag / "index", manifest_hex)
            count += len(layers) + 2
    trio.run(_uploads, root, scale.uploads)
    subprocess.run(["sync"], check=True)
    return count


async def _uploads(root: Path, n: int) -> None:
    """``n`` uploads in one repository, named as the mount names them, made through
    the storage core (so each has its data, startedat, name and hash state)."""
    from layerfs.drivers import FilesystemDriver
    from layerfs.storage import Registry

    uploads = Registry(FilesystemDriver(root)).repository(BUSY).uploads
    for i in range(n):
        upload = await uploads.create()
        await uploads.set_name(upload.id, f"part-{i:05d}")
        await upload.write(os.urandom(256))
        await upload.close()


def _time(command: str, cwd: Path, env: dict[str, str] | None = None) -> float:
    return _measure(command, cwd, env)[0]


def _measure(command: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds a shell command takes and its peak RSS in MiB: that of its largest
    process, by GNU time (a small parent: a child forked from this process would
    report this process's own size as its peak), or, where a pass starts helper
    children beside it (``drivers/sizechild.py``, ``drivers/groupchild.py``), the
    most the pass and its helpers held at one moment, sampled every 20 ms, if that
    is more."""
    together = [0]  # KiB: the largest sum of a pass's and its helpers' RSS seen
    argv = ["/usr/bin/time", "-f", "%M", "-o", "", "sh", "-c", command]
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        argv[4] = rss.name
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
        while process.poll() is None:
            _sample_helpers(process.pid, together)
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, command)
        return seconds, max(int(rss.read().split()[-1]), together[0]) / 1024


HELPERS = (b"sizechild.py", b"groupchild.py")


def _sample_helpers(pid: int, together: list[int]) -> None:
    """Below ``pid``, a process with helper children: its RSS and theirs added at
    this moment, the largest kept in ``together`` (found through the kernel's lists
    of children of each thread, not a scan of every process: trio starts a process
    from a worker thread)."""
    with contextlib.suppress(OSError, ValueError):
        children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]  # fmt: skip
        helpers = [c for c in children if _is_helper(c)]
        if helpers:
            total = _rss_kib(pid) + sum(_rss_kib(c) for c in helpers)
            together[0] = max(together[0], total)
        for child in children:
            if child not in helpers:
                _sample_helpers(child, together)


def _is_helper(pid: int) -> bool:
    command = Path(f"/proc/{pid}/cmdline").read_bytes()
    return any(helper in command for helper in HELPERS)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


QUIET = ("--log-level", "warning")  # a debug line per request would be timed too
COMMANDS = {
    "find | wc -l": "find . | wc -l",
    "ls -lR > /dev/null": "ls -lR > /dev/null",
    "du -s": "du -s > /dev/null",
    "cat 1,000 tag links": "xargs cat < {links} > /dev/null",
    "ls of an _uploads of 1,000": f"ls repositories/{BUSY}/_uploads > /dev/null",
}
# Timed on scripts/fuse_tree.py too. A find lasts a minute, long enough for the
# machine's speed to drift: the ceiling and the mount take turns. A round of cat
# lasts under the 1 s both keep a name's entry, so a round right after another finds
# the names looked up: the ceiling's rounds run back to back, as the mount's do.
TURNS, BACK_TO_BACK = "find | wc -l", "cat 1,000 tag links"
# The mount's rules for a link added one by one to the ceiling (fuse_tree.py's
# options), each timed as the ceiling is: the least a cat of links can cost while the
# mount keeps them. (label, options, why)
LINK_RULES = (
    ("cat: ceiling + flush", ("--flush",), "(each close sends a flush)"),
    ("cat: ceiling+flush+direct_io", ("--flush", "--direct-io"), "(the least the rules allow)"),
)


def bench_scale(work: Path, scale: Scale, rounds: int = 3) -> dict[str, object]:
    store = work / "scale-store"
    started = time.perf_counter()
    blobs = generate(store, scale)
    results: dict[str, object] = {
        "blobs": blobs,
        "generate": time.perf_counter() - started,
        "rounds": rounds,
    }
    links = work / "tag-links"
    found = sorted(
        str(p.relative_to(store / V2))
        for p in store.glob(f"{V2}/repositories/*/*/_manifests/tags/*/current/link")
    )
    links.write_text("\n".join(found[:1000]) + "\n")
    mount = Mount(store, work / "scale-mnt", work / "scale.log", *QUIET).start()
    ceiling: dict[str, float] = {}
    try:
        with contextlib.ExitStack() as trees:
            tree = trees.enter_context(_fuse_ceiling(work, store))
            ruled = [trees.enter_context(_fuse_ceiling(work, store, *options))
                     for _, options, _ in LINK_RULES]  # fmt: skip
            for name, template in COMMANDS.items():
                command = template.format(links=links)
                on_disk = [_time(command, store / V2) for _ in range(rounds)]
                first = _time(command, mount.mountpoint)  # the mount's first look
                if name == "find | wc -l":
                    results["rss after find"] = _rss_mib(mount.pid)
                warm, beside = [], []
                for _ in range(rounds):
                    if name == TURNS:
                        beside.append(_time(command, tree))
                    warm.append(_time(command, mount.mountpoint))
                if name == BACK_TO_BACK:  # each tree's rounds after its first look
                    beside = _looked_again(command, tree, rounds)
                    results["least"] = [
                        statistics.median(_looked_again(command, mnt, rounds)) for mnt in ruled
                    ]
                results[name] = (statistics.median(on_disk), first, statistics.median(warm))
                if beside:
                    ceiling[name] = statistics.median(beside)
        results["finish"] = _finishes(mount.mountpoint)
    finally:
        mount.stop()
    results["ceiling"] = ceiling
    results["fsck"] = _time(f"{LAYERFS} fsck {store} > /dev/null", work)
    storage = {"filesystem": {"rootdirectory": str(store)}}
    results |= _passes_beside(DockerRegistry(work, storage), str(store), work)
    return results


def bench_passes(work: Path, scale: Scale) -> dict[str, object]:
    """gc --dry-run, du and fsck --no-data beside the registry's collector on a local
    store (the page cache warm: each tool reads it once first)."""
    store = work / "passes-store"
    started = time.perf_counter()
    results: dict[str, object] = {"blobs": generate(store, scale)}
    results["generate"] = time.perf_counter() - started
    registry = DockerRegistry(work, {"filesystem": {"rootdirectory": str(store)}})
    _registry_gc(registry)  # warms the cache for everyone
    results |= _passes_beside(registry, str(store), work)
    return results


def print_passes(r: dict[str, object], scale: Scale) -> None:
    print(
        f"\nwhole-store passes: {r['blobs']:,} blobs, {scale.repositories:,} repositories,"
        f" {scale.repositories * TAGS_PER_REPO:,} tags, local (generated in {r['generate']:.0f} s)"
    )
    _print_passes(r, {"gc": ">= 1.5x, RSS <= reg", "du": ">= 1.5x, RSS <= reg",
                      "fsck --no-data": ">= 1.0x, RSS <= reg"})  # fmt: skip


def _registry_gc(registry: DockerRegistry) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of ``docker-registry garbage-collect --dry-run``."""
    config = registry.workdir / "registry-gc.yml"
    config.write_text(json.dumps(registry.config))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # plain HTTP
    return _measure(
        f"docker-registry garbage-collect --dry-run {config} > /dev/null", config.parent, env
    )


PASSES = {"gc": "gc --dry-run", "du": "du", "fsck --no-data": "fsck --no-data"}


PASS_ROUNDS = 3


def _passes_beside(
    registry: DockerRegistry, spec: str, work: Path, env: dict[str, str] | None = None
) -> dict[str, object]:
    """Each whole-store pass of layerfs over ``spec`` and the registry's collector
    over the same store, taking turns for PASS_ROUNDS rounds: for each, the median
    seconds and the most peak RSS (MiB) of any round. (One run of the collector
    alone varied from 4.3 s to 5.8 s on the same store within an hour.)"""
    commands = {name: f"{LAYERFS} {command} {spec} > /dev/null" for name, command in PASSES.items()}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in ["registry gc", *PASSES]}
    for _ in range(PASS_ROUNDS):
        runs["registry gc"].append(_registry_gc(registry))
        for name, command in commands.items():
            runs[name].append(_measure(command, work, env))
    summary = {name: (statistics.median(t for t, _ in found), max(r for _, r in found))
               for name, found in runs.items()}  # fmt: skip
    return {"registry gc": summary.pop("registry gc"), "passes": summary}


S3_PREFIX = "scale"


@contextlib.contextmanager
def _rclone_mount(gateway: SeaweedFS, bucket: str, mnt: Path) -> Iterator[Path]:
    """``rclone mount`` of the store's registry root with its defaults (a directory
    cache of 5 min, no file cache)."""
    plain = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env = {**plain, **{f"RCLONE_CONFIG_GATEWAY_{k}": v for k, v in {
        "TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": gateway.endpoint,
        "ACCESS_KEY_ID": "any", "SECRET_ACCESS_KEY": "any", "FORCE_PATH_STYLE": "true",
    }.items()}}  # fmt: skip
    mnt.mkdir(exist_ok=True)
    subprocess.run(["rclone", "mount", f"gateway:{bucket}/{S3_PREFIX}/{V2}", str(mnt),
                    "--daemon", "--read-only"], check=True, env=env)  # fmt: skip
    yield from _mounted(mnt)


@contextlib.contextmanager
def _s3fs_mount(gateway: SeaweedFS, bucket: str, mnt: Path) -> Iterator[Path]:
    """s3fs-fuse of the store's registry root with its defaults."""
    passwd = mnt.parent / "s3fs-scale.passwd"
    passwd.write_text("any:any\n")
    passwd.chmod(0o600)
    mnt.mkdir(exist_ok=True)
    subprocess.run(["s3fs", f"{bucket}:/{S3_PREFIX}/{V2}", str(mnt), "-o", "ro",
                    "-o", f"passwd_file={passwd}", "-o", f"url={gateway.endpoint}",
                    "-o", "use_path_request_style"], check=True)  # fmt: skip
    yield from _mounted(mnt)


def _mounted(mnt: Path) -> Iterator[Path]:
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)


def _find_twice(mnt: Path, rounds: int) -> tuple[float, float, list[str]]:
    """``find`` the first time through a fresh mount, the median of ``rounds`` more,
    and the entries the first one printed."""
    start = time.perf_counter()
    found = subprocess.run(["find", "."], cwd=mnt, capture_output=True, text=True, check=True)
    first = time.perf_counter() - start
    again = statistics.median(_time("find . | wc -l", mnt) for _ in range(rounds))
    return first, again, found.stdout.splitlines()


def bench_scale_s3(work: Path, scale: Scale, rounds: int = 3) -> dict[str, object]:
    """The same store on SeaweedFS: ``find`` through layerfs, rclone mount and s3fs
    (each mount fresh, then again at once), beside one paginated listing of every key;
    gc, du and fsck beside the registry's gc on the same bucket, with peak RSS."""
    store = work / "s3-scale-store"
    blobs = generate(store, scale)
    gateway = SeaweedFS(work / "s3-scale-seaweed").start()
    try:
        bucket = gateway.create_bucket("scale")
        client = gateway.client()
        files = [p for p in store.rglob("*") if p.is_file()]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: client.upload_file(
                str(p), bucket, f"{S3_PREFIX}/{p.relative_to(store)}"), files))  # fmt: skip
        results: dict[str, object] = {"blobs": blobs, "keys": len(files), "rounds": rounds}
        results["listing"] = statistics.median(_list_prefix(client, bucket) for _ in range(rounds))
        env = {**os.environ, **gateway.aws_env()}
        spec = f"s3://{bucket}/{S3_PREFIX}"
        mount = Mount(spec, work / "s3-scale-mnt", work / "s3-scale.log", *QUIET, env=env).start()
        try:
            *results["layerfs"], ours = _find_twice(mount.mountpoint, rounds)  # type: ignore[misc]
            results["layerfs rss"] = _rss_mib(mount.pid)
        finally:
            mount.stop()
        with _rclone_mount(gateway, bucket, work / "rclone-scale-mnt") as mnt:
            *results["rclone mount"], theirs = _find_twice(mnt, rounds)  # type: ignore[misc]
        with _s3fs_mount(gateway, bucket, work / "s3fs-scale-mnt") as mnt:
            *results["s3fs"], _ = _find_twice(mnt, rounds)  # type: ignore[misc]
        results["entries"] = _compare_entries(ours, theirs)
        storage = gateway.registry_storage(bucket, f"/{S3_PREFIX}")
        results |= _passes_beside(DockerRegistry(work, storage), spec, work, env)
        return results
    finally:
        gateway.stop()


def _compare_entries(ours: list[str], theirs: list[str]) -> str:
    """What layerfs's ``find`` lacks or doubles against rclone's, outside ``_uploads``
    (which the mount shows by upload name, not by the store's upload directories)."""
    outside = [p for p in theirs if "/_uploads/" not in p]
    doubled = len(ours) - len(set(ours))
    missing = len(set(outside) - set(ours))
    return f"{len(ours):,} entries, {missing} missing, {doubled} doubled"


def _list_prefix(client, bucket: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds for one paginated listing (1,000 keys a page) of every key of the store."""
    start = time.perf_counter()
    for _ in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=S3_PREFIX):
        pass
    return time.perf_counter() - start


def print_scale_s3(r: dict[str, object], scale: Scale) -> None:
    print(
        f"\nscale on S3 (SeaweedFS): {r['blobs']:,} blobs, {scale.repositories} repositories,"
        f" {r['keys']:,} keys; medians of {r['rounds']}; one listing of every key"
        f" {r['listing']:.2f} s; layerfs's find: {r['entries']}"
    )
    print(f"{'command':34} {'peer':>10} {'layerfs':>10} {'ratio':>7}  goal")
    ours_first, ours_again = r["layerfs"]  # type: ignore[misc]
    for peer, goals in (("rclone mount", ("<= 1.0x", "<= 2.5x")), ("s3fs", ("", ""))):
        first, again = r[peer]  # type: ignore[misc]
        for name, theirs, ours, goal in (("first", first, ours_first, goals[0]),
                                         ("again", again, ours_again, goals[1])):  # fmt: skip
            print(f"{'find ' + name + ': layerfs vs ' + peer:34} {theirs:9.3f}s {ours:9.3f}s"
                  f" {ours / theirs:6.2f}x  {goal}")  # fmt: skip
    print(f"{'daemon RSS after find':34} {'':>10} {r['layerfs rss']:8.0f}M")
    _print_passes(r, {"gc": ">= 3x faster", "du": ">= 3x faster", "fsck --no-data": ">= 2x faster"})


def _print_passes(r: dict[str, object], goals: dict[str, str]) -> None:
    """Each pass beside the registry's gc: seconds, speed-up, peak RSS of both."""
    reg, reg_rss = r["registry gc"]  # type: ignore[misc]
    print(f"{'pass vs registry gc --dry-run':34} {'registry':>10} {'layerfs':>10} {'faster':>7}"
          f" {'RSS reg':>8} {'RSS ours':>8}  goal (medians of {PASS_ROUNDS} rounds"
          " taking turns; RSS: the most of any)")  # fmt: skip
    for name, (seconds, rss) in r["passes"].items():  # type: ignore[attr-defined]
        print(f"{'layerfs ' + name:34} {reg:9.3f}s {seconds:9.3f}s {reg / seconds:6.2f}x"
              f" {reg_rss:7.0f}M {rss:7.0f}M  {goals[name]}")  # fmt: skip


def _looked_again(command: str, mnt: Path, rounds: int) -> list[float]:
    """``rounds`` times of ``command`` in ``mnt`` after a first look at it, as the
    mount's warm rounds follow its first."""
    _time(command, mnt)
    return [_time(command, mnt) for _ in range(rounds)]


@contextlib.contextmanager
def _fuse_ceiling(work: Path, store: Path, *rules: str) -> Iterator[Path]:
    """scripts/fuse_tree.py serving the store's own tree (its names, kinds, sizes and
    links) from memory, mounted beside the store's mount: what pyfuse3 itself costs
    for ``find`` and ``cat`` on this machine (see TURNS); with ``rules`` (its
    options), what it costs keeping the mount's rules for a link."""
    mnt = work / ("tree-mnt" + "".join(rules))
    mnt.mkdir()
    tree = subprocess.Popen([sys.executable, str(Path(__file__).parent / "fuse_tree.py"),
                             str(mnt), str(store / V2), *rules])  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        tree.wait(10)


def _finishes(mnt: Path) -> tuple[float, float]:
    """Seconds to create and finish an upload in an empty repository, and the next
    one in the repository already holding ``uploads`` of them (medians of 3)."""

    def one(repository: str, i: int) -> float:
        data = os.urandom(4096) + str(i).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        uploads = mnt / "repositories" / repository / "_uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        (uploads / f"new-{i}").write_bytes(data)
        os.rename(uploads / f"new-{i}", uploads / digest)
        return time.perf_counter() - start

    empty = statistics.median(one(f"fresh{i}/app", i) for i in range(3))
    busy = statistics.median(one(BUSY, 100 + i) for i in range(3))
    return empty, busy


def _print_least(r: dict[str, object], ceiling: float) -> None:
    """The ceiling's ``cat`` with the mount's rules for a link (LINK_RULES)."""
    least_of: list[float] = r["least"]  # type: ignore[assignment]
    for (label, _, why), least in zip(LINK_RULES, least_of, strict=True):
        print(f"{label:30} {least:9.3f}s {'':>10} {'':>10}"
              f" {least / ceiling:6.2f}x {'':>7}  {why}")  # fmt: skip


def print_scale(r: dict[str, object], scale: Scale) -> None:
    print(
        f"\nscale: {r['blobs']:,} blobs, {scale.repositories} repositories, "
        f"{scale.repositories * TAGS_PER_REPO:,} tags, {scale.uploads:,} uploads in one "
        f"(generated in {r['generate']:.0f} s); medians of {r['rounds']}"
    )
    print(f"{'command':30} {'store dir':>10} {'mount 1st':>10} {'mount warm':>10} {'ratio':>7}"
          f" {'warm':>7}  goal")  # fmt: skip
    for name in COMMANDS:
        disk, first, warm = r[name]  # type: ignore[misc]
        print(f"{name:30} {disk:9.3f}s {first:9.3f}s {warm:9.3f}s {first / disk:6.1f}x"
              f" {warm / disk:6.1f}x  <= 3x, warm <= 2x")  # fmt: skip
    print(f"{'the same tree from memory':30} {'ceiling':>10} {'mount 1st':>10} {'mount warm':>10}"
          f" {'ratio':>7} {'warm':>7}  goal (scripts/fuse_tree.py; find: in turns)")  # fmt: skip
    for name, goal in ((TURNS, "<= 1.3x"), (BACK_TO_BACK, "<= 1.5x")):
        _, first, warm = r[name]  # type: ignore[misc]
        ceiling = r["ceiling"][name]  # type: ignore[index]
        print(f"{name + ': vs ceiling':30} {ceiling:9.3f}s {first:9.3f}s {warm:9.3f}s"
              f" {first / ceiling:6.2f}x {warm / ceiling:6.2f}x  {goal}")  # fmt: skip
    _print_least(r, r["ceiling"][BACK_TO_BACK])  # type: ignore[index]
    empty, busy = r["finish"]  # type: ignore[misc]
    print(f"{'create+finish: 1,001st vs 1st':30} {empty:9.3f}s {busy:9.3f}s {'':>10}"
          f" {busy / empty:6.1f}x {'':>7}  ~1x")  # fmt: skip
    print(f"{'daemon RSS after find':30} {r['rss after find']:8.0f}M {'':>10} {'':>10}"
          f" {'':>7} {'':>7}  <= 150 MB")  # fmt: skip
    print(f"{'fsck (hashing every blob)':30} {r['fsck']:9.3f}s")
    _print_passes(r, {"gc": ">= 1.5x, RSS <= reg", "du": ">= 1.5x, RSS <= reg",
                      "fsck --no-data": ">= 1.0x, RSS <= reg"})  # fmt: skip


def s3_scale(blobs: int) -> Scale:
    """The S3 version of the store: a tenth of the blobs, as many uploads per blob."""
    return Scale(blobs=blobs, repositories=max(1, blobs // 100), uploads=max(1, blobs // 50))


if __name__ == "__main__":  # the section alone: bench_scale.py [BLOBS [ROUNDS [S3-BLOBS]]]
    import tempfile

    blobs = int(sys.argv[1]) if len(sys.argv) > 1 else Scale.blobs
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    s3_blobs = int(sys.argv[3]) if len(sys.argv) > 3 else blobs // 10
    chosen = Scale(blobs=blobs, repositories=max(1, blobs // 100))
    with tempfile.TemporaryDirectory(prefix="layerfs-scale-") as tmp:
        if blobs:
            print_scale(bench_scale(Path(tmp), chosen, rounds), chosen)
        if s3_blobs:
            print_scale_s3(
                bench_scale_s3(Path(tmp), s3_scale(s3_blobs), rounds), s3_scale(s3_blobs)
            )
