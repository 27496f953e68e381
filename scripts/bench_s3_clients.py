"""The S3 client libraries side by side on the same gateway and the same file: boto3
(what the S3 driver uses, in worker threads) and obstore (Rust's object_store), for
the three kinds of traffic a mount makes: a large multipart upload, a large read, and
many small reads (link files, hash states) one after another."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
from obstore.store import S3Store

SMALL_READS = 300
RANGE = 8 << 20  # the driver's read size and read-ahead
RANGES_IN_FLIGHT = 4


def obstore_store(endpoint: str, bucket: str) -> S3Store:
    return S3Store(
        bucket,
        endpoint=endpoint,
        access_key_id="any",
        secret_access_key="any",
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


def timed_call(run: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def boto3_ranged_read(client, bucket: str, key: str, size: int) -> None:  # type: ignore[no-untyped-def]
    """The driver's read pattern: 8 MiB ranged GETs, four in flight, in threads."""

    def one(start: int) -> int:
        end = min(start + RANGE, size) - 1
        body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")["Body"]
        return len(body.read())

    with ThreadPoolExecutor(RANGES_IN_FLIGHT) as pool:
        assert sum(pool.map(one, range(0, size, RANGE))) == size


def obstore_read(store: S3Store, key: str, size: int) -> None:
    got = sum(len(chunk) for chunk in obstore.get(store, key).stream(RANGE))
    assert got == size


def bench_clients(client, endpoint: str, bucket: str, source: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds for each client and each kind of traffic."""
    store = obstore_store(endpoint, bucket)
    size = source.stat().st_size
    client.put_object(Bucket=bucket, Key="clients/small", Body=b"sha256:" + b"0" * 64)
    out = {
        "boto3_put": timed_call(lambda: client.upload_file(str(source), bucket, "clients/boto3")),
        "obstore_put": timed_call(
            lambda: obstore.put(store, "clients/obstore", source, max_concurrency=10)
        ),
        "boto3_get": timed_call(lambda: boto3_ranged_read(client, bucket, "clients/boto3", size)),
        "obstore_get": timed_call(lambda: obstore_read(store, "clients/obstore", size)),
        "boto3_small": timed_call(
            lambda: [
                client.get_object(Bucket=bucket, Key="clients/small")["Body"].read()
                for _ in range(SMALL_READS)
            ]
        ),
        "obstore_small": timed_call(
            lambda: [obstore.get(store, "clients/small").bytes() for _ in range(SMALL_READS)]
        ),
    }
    for key in ("clients/boto3", "clients/obstore", "clients/small"):
        client.delete_object(Bucket=bucket, Key=key)
    return out


def print_clients(times: dict[str, float], mib: int) -> None:
    rows = [
        (f"upload {mib} MiB (multipart, 10 at once)", "put"),
        (f"read {mib} MiB (8 MiB pieces)", "get"),
        (f"{SMALL_READS} small GETs one after another", "small"),
    ]
    print()
    print(
        f"{'S3 clients, same gateway':45} {'boto3':>9} {'obstore':>9} {'ratio':>8}"
        "  (boto3's speed over obstore's)"
    )
    for name, kind in rows:
        boto3, other = times[f"boto3_{kind}"], times[f"obstore_{kind}"]
        print(f"{name:45} {boto3:8.2f}s {other:8.2f}s {other / boto3:7.2f}x")
