"""The measurements behind scripts/bench. Every figure comes from this run."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_images import bench_images, print_images  # noqa: E402
from scripts.bench_s3_clients import bench_clients, print_clients, timed_call  # noqa: E402
from scripts.bench_scale import (  # noqa: E402
    Scale,
    bench_passes,
    bench_scale,
    bench_scale_s3,
    print_passes,
    print_scale,
    print_scale_s3,
    s3_scale,
)
from tests.mounts import Mount  # noqa: E402
from tests.registry import DockerRegistry  # noqa: E402
from tests.seaweed import SeaweedFS  # noqa: E402


def timed(args: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    with contextlib.suppress(OSError):  # only root may; then the cache starts cold
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def make_file(path: Path, mib: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    return "sha256:" + h.hexdigest()


class PeakRss(threading.Thread):
    """Samples VmHWM of a process (the kernel's own peak counter)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0

    def run(self) -> None:
        self.read()

    def read(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    self.peak_kib = int(line.split()[1])
        return self.peak_kib


def cpu_of(pid: int) -> tuple[float, float, int]:
    """User and system seconds and minor page faults of a process so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])


def bench_layerfs(work: Path, source: Path, digest: str) -> dict[str, float]:
    """cp into an upload and mv to its digest, with the daemon's CPU over both."""
    store = work / "layerfs-store"
    shutil.rmtree(store, ignore_errors=True)
    mount = Mount(store, work / "mnt", work / "layerfs.log", "--log-level", "warning").start()
    try:
        repo = mount.mountpoint / "repositories/bench/app"
        repo.mkdir(parents=True)
        drop_caches()
        before = cpu_of(mount.pid)
        cp = timed(["cp", str(source), str(repo / "_uploads/blob")])
        mv = timed(["mv", str(repo / "_uploads/blob"), str(repo / f"_uploads/{digest}")])
        user, system, faults = (b - a for a, b in zip(before, cpu_of(mount.pid), strict=True))
        blob = mount.mountpoint / "blobs/sha256" / digest[7:9] / digest[7:] / "data"
        timed(["cat", str(blob)], stdout=subprocess.DEVNULL)
        cat = timed(["cat", str(blob)], stdout=subprocess.DEVNULL)
        return {"cp": cp, "mv": mv, "cat": cat, "user": user, "sys": system, "faults": faults}
    finally:
        mount.stop()


def bench_rss(work: Path, gib: int) -> float:
    mount = Mount(work / "rss-store", work / "mnt", work / "rss.log").start()
    try:
        repo = mount.mountpoint / "repositories/bench/rss"
        repo.mkdir(parents=True)
        subprocess.run(
            [
                "dd",
                "if=/dev/zero",
                f"of={repo}/_uploads/big",
                "bs=1M",
                f"count={gib * 1024}",
                "status=none",
            ],
            check=True,
        )
        return PeakRss(mount.pid).read() / 1024
    finally:
        mount.stop()


def bench_registry(work: Path, source: Path, digest: str) -> dict[str, float]:
    store = work / "registry-store"
    shutil.rmtree(store, ignore_errors=True)
    registry = DockerRegistry(work, {"filesystem": {"rootdirectory": str(store)}}).start()
    try:
        drop_caches()
        push = push_over_http(registry, source, digest)
        url = f"{registry.url}/v2/bench/app/blobs/{digest}"
        timed(["curl", "-sf", "-o", "/dev/null", url])
        get = timed(["curl", "-sf", "-o", "/dev/null", url])
        return {"push": push, "get": get}
    finally:
        registry.stop()


def bench_references(work: Path, source: Path) -> dict[str, float]:
    mnt = work / "discard"
    mnt.mkdir()
    sink = subprocess.Popen([sys.executable, str(ROOT / "scripts/fuse_discard.py"), str(mnt)])
    try:
        deadline = time.monotonic() + 10
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        drop_caches()
        discard = timed(["cp", str(source), str(mnt / "sink")])
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        sink.wait(10)
    drop_caches()
    disk = timed(["cp", str(source), str(work / "disk-copy")])
    (work / "disk-copy").unlink()
    return {"discard": discard, "disk": disk}


def bench_durable(work: Path, source: Path) -> dict[str, float]:
    """``dd bs=1M conv=fdatasync`` of the same bytes onto the same file system, with
    its CPU: the durable-write limit."""
    drop_caches()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    durable = timed(
        ["dd", f"if={source}", f"of={work / 'disk-copy'}", "bs=1M", "conv=fdatasync", "status=none"]
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (work / "disk-copy").unlink()
    return {
        "durable": durable,
        "user": after.ru_utime - before.ru_utime,
        "sys": after.ru_stime - before.ru_stime,
    }


def floors(mib: int) -> dict[str, float]:
    """Seconds per GiB, on one core, of sha256 and of one copy into warm memory: what
    hashing and each copy of the bytes cost at the least."""
    data = os.urandom(64 << 20)
    target = bytearray(len(data))
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    sha = time.perf_counter() - start
    target[:] = data  # faulted in: what follows is the copy alone
    start = time.perf_counter()
    for _ in range(4):
        target[:] = data
    copy = (time.perf_counter() - start) / 4
    return {"sha256": sha * 16, "copy": copy * 16, "mib": mib}


def push_rounds(work: Path, source: Path, digest: str, rounds: int) -> dict[str, object]:
    """layerfs cp+mv, the registry's HTTP push and dd, taking turns ``rounds`` times."""
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for prefix, result in (
            ("lf", bench_layerfs(work, source, digest)),
            ("reg", bench_registry(work, source, digest)),
            ("dd", bench_durable(work, source)),
        ):
            for name, value in result.items():
                samples.setdefault(f"{prefix}_{name}", []).append(value)
    samples["lf_cpmv"] = [c + m for c, m in zip(samples["lf_cp"], samples["lf_mv"], strict=True)]
    samples["lf_mvshare"] = [
        m / c * 100 for c, m in zip(samples["lf_cp"], samples["lf_mv"], strict=True)
    ]
    out: dict[str, object] = {k: statistics.median(v) for k, v in samples.items()}
    out["spread"] = {k: max(v) / min(v) for k, v in samples.items() if min(v) > 0}
    out["worst_mvshare"] = max(samples["lf_mvshare"])
    out["rounds"] = rounds
    return out


def push_over_http(registry: DockerRegistry, source: Path, digest: str) -> float:
    """POST an upload, then PUT the whole blob with ``?digest=`` (curl -T)."""
    start = time.perf_counter()
    location = registry.start_upload("bench/app")
    sep = "&" if "?" in location else "?"
    subprocess.run(
        [
            "curl",
            "-sf",
            "-X",
            "PUT",
            "-T",
            str(source),
            "-H",
            "Content-Type: application/octet-stream",
            f"{location}{sep}digest={digest}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def bench_s3(work: Path, source: Path, digest: str, rounds: int = 3) -> dict[str, float]:
    """Each upload is measured once per round, the clients taking turns, and the
    medians of ``rounds`` rounds are compared: the gateway slows down as it fills, and
    SeaweedFS on this disk now and then waits 0.3-1 s on a disk flush (its threads in
    submit_bio_wait), which lands on whichever client is uploading. Its volumes are
    large enough that none fills during the run (making new ones stalls uploads too)."""
    gateway = SeaweedFS(work / "seaweed", volume_mib=8192, volumes=16).start()
    bucket = gateway.create_bucket("bench")
    client = gateway.client()
    samples: dict[str, list[float]] = {}
    try:
        for n in range(rounds):
            for name, value in s3_round(work, gateway, bucket, source, digest, n).items():
                samples.setdefault(name, []).append(value)
        out = {name: statistics.median(values) for name, values in samples.items()}
        out["mv_read"] = max(samples["mv_read"])
        out.update({f"spread_{name}": max(v) / min(v) for name, v in samples.items() if min(v)})
        out["rounds"] = rounds

        out["boto3_down"] = timed_call(
            lambda: client.download_file(bucket, "boto3/blob0", str(work / "downloaded"))
        )
        (work / "downloaded").unlink()
        mount = Mount(
            f"s3://{bucket}/layerfs0", work / "s3mnt", work / "s3b.log", env=gateway.aws_env()
        ).start()
        try:
            blob = mount.mountpoint / "blobs/sha256" / digest[7:9] / digest[7:] / "data"
            out["cat"] = timed(["cat", str(blob)], stdout=subprocess.DEVNULL)
        finally:
            mount.stop()

        clients = bench_clients(client, gateway.endpoint, bucket, source)
        out.update({f"clients_{k}": v for k, v in clients.items()})
    finally:
        gateway.stop()
    return out


def s3_round(
    work: Path, gateway: SeaweedFS, bucket: str, source: Path, digest: str, n: int
) -> dict[str, float]:
    """Every upload compared, one after another: boto3's; layerfs's cp and finish, into
    a store of its own so that the finish moves the blob again; one server-side copy of
    boto3's object; s3fs-fuse's cp; docker-registry's push, into a store of its own too
    (the registry skips the move of a blob it has already)."""
    client = gateway.client()
    out: dict[str, float] = {}
    out["boto3_up"] = timed_call(lambda: client.upload_file(str(source), bucket, f"boto3/blob{n}"))
    mount = Mount(
        f"s3://{bucket}/layerfs{n}", work / "s3mnt", work / f"s3-{n}.log", env=gateway.aws_env()
    ).start()
    try:
        repo = mount.mountpoint / "repositories/bench/app"
        repo.mkdir(parents=True)
        before = cpu_of(mount.pid)
        out["cp"] = timed(["cp", str(source), str(repo / "_uploads/blob")])
        read_before = int(os.getxattr(mount.mountpoint, "user.layerfs.bytes-read"))
        out["mv"] = timed(["mv", str(repo / "_uploads/blob"), str(repo / f"_uploads/{digest}")])
        read_after = int(os.getxattr(mount.mountpoint, "user.layerfs.bytes-read"))
        out["mv_read"] = read_after - read_before
        out["cpu_user"], out["cpu_sys"], _ = (
            b - a for a, b in zip(before, cpu_of(mount.pid), strict=True)
        )
    finally:
        mount.stop()
    source_key = {"Bucket": bucket, "Key": f"boto3/blob{n}"}
    out["copy"] = timed_call(
        lambda: client.copy_object(Bucket=bucket, Key=f"boto3/copy{n}", CopySource=source_key)
    )
    out["s3fs"] = bench_s3fs(work, gateway, bucket, source, n)
    for mode in ("writes", "off"):
        out[f"rclone_{mode}"] = bench_rclone(work, gateway, bucket, source, n, mode)
    storage = gateway.registry_storage(bucket, f"/registry{n}", 10 << 20)
    registry = DockerRegistry(work, storage).start()
    try:
        out["push"] = push_over_http(registry, source, digest)
    finally:
        registry.stop()
    return out


def bench_rclone(
    work: Path, gateway: SeaweedFS, bucket: str, source: Path, n: int, mode: str
) -> float:
    """Seconds from the start of a ``cp`` into ``rclone mount`` (S3 backend, the same
    gateway, ``--vfs-cache-mode`` ``mode``) until the object is in the bucket whole:
    with a write cache rclone uploads after the close (``--vfs-write-back 0s``: at
    once), so the cp alone would not count the upload."""
    plain = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # plain HTTP
    env = {**plain, **{f"RCLONE_CONFIG_GATEWAY_{k}": v for k, v in {
        "TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": gateway.endpoint,
        "ACCESS_KEY_ID": "any", "SECRET_ACCESS_KEY": "any", "FORCE_PATH_STYLE": "true",
    }.items()}}  # fmt: skip
    mnt = work / f"rclone-{mode}-mnt"
    mnt.mkdir(exist_ok=True)
    prefix = f"rclone-{mode}{n}"
    subprocess.run(
        ["rclone", "mount", f"gateway:{bucket}/{prefix}", str(mnt), "--daemon",
         "--vfs-cache-mode", mode, "--vfs-write-back", "0s",
         "--cache-dir", str(work / "rclone-cache")],
        check=True, env=env,
    )  # fmt: skip
    client = gateway.client()
    size = source.stat().st_size
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        start = time.perf_counter()
        subprocess.run(["cp", str(source), str(mnt / "blob")], check=True)
        while time.monotonic() < deadline + 600:
            with contextlib.suppress(Exception):
                if client.head_object(Bucket=bucket, Key=f"{prefix}/blob")["ContentLength"] == size:
                    break
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)


def bench_s3fs(work: Path, gateway: SeaweedFS, bucket: str, source: Path, n: int) -> float:
    passwd = work / "s3fs.passwd"
    passwd.write_text("any:any\n")
    passwd.chmod(0o600)
    mnt = work / "s3fs-mnt"
    mnt.mkdir(exist_ok=True)
    subprocess.run(
        [
            "s3fs",
            bucket,
            str(mnt),
            "-o",
            f"passwd_file={passwd}",
            "-o",
            f"url={gateway.endpoint}",
            "-o",
            "use_path_request_style",
        ],
        check=True,
    )
    try:
        return timed(["cp", str(source), str(mnt / f"s3fs-blob{n}")])
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)


def print_s3(s3: dict[str, float], mib: int) -> None:
    lf_push = s3["cp"] + s3["mv"]
    best_peer = min(s3["s3fs"], s3["rclone_writes"], s3["rclone_off"])
    rows = [
        (
            "S3 cp: layerfs vs boto3 upload_file",
            s3["cp"],
            s3["boto3_up"],
            s3["boto3_up"] / s3["cp"],
            ">= 1.0x",
        ),
        ("S3 cp: layerfs vs s3fs-fuse cp", s3["cp"], s3["s3fs"], s3["s3fs"] / s3["cp"], ""),
        (
            "S3 cp: layerfs vs rclone mount (cache writes)",
            s3["cp"],
            s3["rclone_writes"],
            s3["rclone_writes"] / s3["cp"],
            "",
        ),
        (
            "S3 cp: layerfs vs rclone mount (cache off)",
            s3["cp"],
            s3["rclone_off"],
            s3["rclone_off"] / s3["cp"],
            "",
        ),
        (
            "S3 cp: layerfs vs the best of s3fs and rclone",
            s3["cp"],
            best_peer,
            best_peer / s3["cp"],
            ">= 1.3x",
        ),
        (
            "S3 finish vs one server-side copy",
            s3["mv"],
            s3["copy"],
            s3["mv"] / s3["copy"],
            "<= 1.0 (ratio of times)",
        ),
        (
            "S3 cp+finish vs registry (s3) HTTP push",
            lf_push,
            s3["push"],
            s3["push"] / lf_push,
            ">= 1.5x",
        ),
        (
            "S3 read: cat vs boto3 download_file",
            s3["cat"],
            s3["boto3_down"],
            s3["boto3_down"] / s3["cat"],
            ">= 0.8x",
        ),
    ]
    print()
    print(
        f"{'S3 (SeaweedFS), ' + str(mib) + ' MiB':45} {'layerfs':>9} {'other':>9} "
        f"{'ratio':>8}  goal"
    )
    for name, ours, theirs, ratio, goal in rows:
        print(f"{name:45} {ours:8.2f}s {theirs:8.2f}s {ratio:7.2f}x  {goal}")
    print(f"{'bytes read from S3 during the finish':45} {s3['mv_read']:9.0f}  {'':>18}  0")
    gib = mib / 1024
    print(f"{'daemon CPU per GiB on S3, cp+finish':45} {s3['cpu_user'] / gib:8.2f}s user"
          f" {s3['cpu_sys'] / gib:.2f}s system (local: the CPU table above)")  # fmt: skip
    spreads = ", ".join(
        f"{label} {s3['spread_' + key]:.2f}"
        for key, label in (
            ("cp", "layerfs cp"),
            ("boto3_up", "boto3"),
            ("s3fs", "s3fs"),
            ("rclone_writes", "rclone writes"),
            ("rclone_off", "rclone off"),
            ("push", "registry"),
            ("mv", "finish"),
            ("copy", "copy"),
        )  # fmt: skip
    )
    print(
        f"(uploads, finish and copy: medians of {s3['rounds']:.0f} rounds taking turns; "
        f"slowest/fastest round: {spreads})"
    )
    print_clients({k[8:]: v for k, v in s3.items() if k.startswith("clients_")}, mib)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rss-gib", type=int, default=4)
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 section")
    parser.add_argument("--s3-rounds", type=int, default=3, help="alternating S3 rounds")
    parser.add_argument("--no-local", action="store_true", help="skip the local mount section")
    parser.add_argument("--no-images", action="store_true", help="skip import and fsck")
    parser.add_argument("--layers", type=int, default=8, help="layers of the import image")
    parser.add_argument("--layer-mib", type=int, default=64)
    parser.add_argument(
        "--scale-blobs", type=int, default=50_000, help="blobs of the scale section (0: skip it)"
    )
    parser.add_argument("--scale-rounds", type=int, default=3)
    parser.add_argument("--local-rounds", type=int, default=3, help="rounds of the local push")
    parser.add_argument(
        "--scale-s3-blobs", type=int, default=5_000, help="blobs of the S3 scale part (0: skip)"
    )
    parser.add_argument(
        "--passes-blobs", type=int, default=200_000,
        help="blobs of the local store gc, du and fsck run on (0: skip)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.no_local:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="layerfs-bench-") as tmp:
            run_other_sections(args, Path(tmp))
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="layerfs-bench-") as tmp:
        work = Path(tmp)
        source = work / "source"
        digest = make_file(source, args.size_mib)
        push = push_rounds(work, source, digest, args.local_rounds)
        lf = {k[3:]: v for k, v in push.items() if k.startswith("lf_")}
        reg = {k[4:]: v for k, v in push.items() if k.startswith("reg_")}
        ref = {**bench_references(work, source), "durable": push["dd_durable"]}
        floor = floors(args.size_mib)
        rss = bench_rss(work, args.rss_gib)
        s3 = None if args.no_s3 else bench_s3(work, source, digest, args.s3_rounds)
        images = None if args.no_images else bench_images(work, args.layers, args.layer_mib)
    size = f"{args.size_mib} MiB"
    mib = args.size_mib
    rows = [
        (
            f"push {size}: cp+mv vs HTTP POST+PUT",
            lf["cp"] + lf["mv"],
            reg["push"],
            reg["push"] / lf["cpmv"],
            ">= 2.5x",
        ),
        (f"mv {size} as a share of its cp", lf["mv"], lf["cp"], lf["mvshare"], "<= 2 %"),
        (
            f"  the worst of {push['rounds']} rounds",
            lf["mv"],
            lf["cp"],
            push["worst_mvshare"],
            "<= 2 %",
        ),  # fmt: skip
        (
            f"repeated read {size}: cat vs curl GET",
            lf["cat"],
            reg["get"],
            reg["get"] / lf["cat"],
            ">= 1x",
        ),
        (
            f"cp {size}: layerfs vs FUSE discard mount",
            lf["cp"],
            ref["discard"],
            ref["discard"] / lf["cp"],
            "(ceiling)",
        ),
        (
            f"cp {size}: layerfs vs plain disk",
            lf["cp"],
            ref["disk"],
            ref["disk"] / lf["cp"],
            "(reference)",
        ),
        (
            f"cp+mv {size}: layerfs vs dd conv=fdatasync",
            lf["cpmv"],
            ref["durable"],
            ref["durable"] / lf["cpmv"],
            ">= 0.9x",
        ),
    ]
    print(f"local push: medians of {push['rounds']} rounds, layerfs, registry and dd in turn")
    print(f"{'measure':45} {'layerfs':>9} {'other':>9} {'ratio':>8}  goal")
    for name, ours, theirs, ratio, goal in rows:
        unit = "%" if goal.endswith("%") else "x"
        print(f"{name:45} {ours:8.2f}s {theirs:8.2f}s {ratio:7.2f}{unit}  {goal}")
    print(
        f"{'daemon peak RSS copying ' + str(args.rss_gib) + ' GiB':45} {rss:8.1f}M "
        f"{'':>9} {'':>8}  < 150 MB"
    )
    print_cpu(push, floor)
    print(
        f"\nthroughput: layerfs cp {mib / lf['cp']:.0f} MiB/s, registry push "
        f"{mib / reg['push']:.0f} MiB/s, FUSE discard {mib / ref['discard']:.0f} MiB/s, "
        f"disk {mib / ref['disk']:.0f} MiB/s"
    )
    if s3 is not None:
        print_s3(s3, mib)
    if images is not None:
        print_images(images, args.layers, args.layer_mib)
    run_scale(args)


def print_cpu(push: dict[str, object], floor: dict[str, float]) -> None:
    """CPU seconds per GiB: the daemon's over cp+mv, dd's, and the floors."""
    gib = floor["mib"] / 1024
    spread = push["spread"]  # type: ignore[index]

    def row(name: str, user: float, system: float, goal: str, faults: str = "") -> None:
        print(f"{name:45} {user / gib:8.2f}s {system / gib:8.2f}s {(user + system) / gib:7.2f}s"
              f" {faults:>9}  {goal}")  # fmt: skip

    print(f"\n{'CPU per GiB (medians)':45} {'user':>9} {'system':>9} {'total':>8} {'faults':>9}")
    row("layerfs daemon, cp+mv", push["lf_user"], push["lf_sys"], "<= 1.5 s",  # type: ignore[arg-type]
        f"{push['lf_faults'] / gib:.0f}")  # fmt: skip
    row("dd bs=1M conv=fdatasync (the kernel's part)", push["dd_user"], push["dd_sys"], "(limit)")  # type: ignore[arg-type]
    row("sha256 on one core", floor["sha256"] * gib, 0.0, "(floor)")
    row("one copy into warm memory", floor["copy"] * gib, 0.0, "(floor, each copy)")
    print(f"{'spread (max/min) of the daemon CPU, cp+mv':45}"
          f" {spread.get('lf_user', 0):8.2f}x {spread.get('lf_sys', 0):8.2f}x"  # type: ignore[union-attr]
          f"   cp+mv {spread.get('lf_cpmv', 0):.2f}x, dd {spread.get('dd_durable', 0):.2f}x")  # type: ignore[union-attr]  # fmt: skip


def run_scale(args: argparse.Namespace) -> None:
    """The scale section, in a work directory of its own (its store is large)."""
    if args.scale_blobs > 0:
        scale = Scale(blobs=args.scale_blobs, repositories=max(1, args.scale_blobs // 100))
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="layerfs-scale-") as tmp:
            print_scale(bench_scale(Path(tmp), scale, args.scale_rounds), scale)
    if args.passes_blobs > 0:
        big = Scale(blobs=args.passes_blobs, repositories=max(1, args.passes_blobs // 100))
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="layerfs-passes-") as tmp:
            print_passes(bench_passes(Path(tmp), big), big)
    if args.scale_s3_blobs > 0 and not args.no_s3:
        small = s3_scale(args.scale_s3_blobs)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="layerfs-scale-s3-") as tmp:
            print_scale_s3(bench_scale_s3(Path(tmp), small, args.scale_rounds), small)


def run_other_sections(args: argparse.Namespace, work: Path) -> None:
    """The S3 and images sections alone (``--no-local``)."""
    if not args.no_s3:
        source = work / "source"
        digest = make_file(source, args.size_mib)
        print_s3(bench_s3(work, source, digest, args.s3_rounds), args.size_mib)
    if not args.no_images:
        print_images(bench_images(work, args.layers, args.layer_mib), args.layers, args.layer_mib)
    run_scale(args)


if __name__ == "__main__":
    main()
