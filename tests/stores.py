"""The stores a mount test runs on, with a way to look at their bytes from outside
the mount: a local directory, or a key prefix in a SeaweedFS bucket."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from layerfs.drivers import FilesystemDriver, StorageDriver
from layerfs.drivers.s3 import S3Driver

from .seaweed import SeaweedFS

V2 = "docker/registry/v2"


class FilesystemStore:
    kind = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spec = str(root)
        self.env: dict[str, str] = {}

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def version(self, rel: str) -> tuple[object, ...]:
        """Changes whenever the file is written again."""
        st = (self.root / rel).stat()
        return st.st_ino, st.st_mtime_ns

    def files(self, rel: str) -> list[str]:
        """Every file below ``rel``, relative to the store's root."""
        base = self.root / rel
        found = base.rglob("*") if base.exists() else []
        return sorted(str(p.relative_to(self.root)) for p in found if p.is_file())

    def remove(self, rel: str) -> None:
        shutil.rmtree(self.root / rel, ignore_errors=True)

    def pending_writes(self) -> list[str]:
        """Writes begun and never finished that cost storage: none on a filesystem."""
        return []

    def registry_storage(self) -> dict:
        return {"filesystem": {"rootdirectory": str(self.root)}}

    def driver(self) -> StorageDriver:
        return FilesystemDriver(str(self.root))


class S3Store:
    kind = "s3"

    def __init__(self, gateway: SeaweedFS, bucket: str, prefix: str) -> None:
        self.gateway, self.bucket, self.prefix = gateway, bucket, prefix
        self.spec = f"s3://{bucket}/{prefix}"
        self.env = gateway.aws_env()
        self.client = gateway.client()

    def read(self, rel: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}")["Body"].read()

    def exists(self, rel: str) -> bool:
        """A key, or a prefix that still holds keys."""
        key = f"{self.prefix}/{rel}"
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=5)
        return any(
            o["Key"] == key or o["Key"].startswith(key + "/") for o in listed.get("Contents", [])
        )

    def version(self, rel: str) -> tuple[object, ...]:
        head = self.client.head_object(Bucket=self.bucket, Key=f"{self.prefix}/{rel}")
        return head["ETag"], head["LastModified"]

    def files(self, rel: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/{rel}/"
        )
        skip = len(self.prefix) + 1
        return sorted(o["Key"][skip:] for page in pages for o in page.get("Contents", []))

    def remove(self, rel: str) -> None:
        for name in self.files(rel):
            self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}")

    def pending_writes(self) -> list[str]:
        """Keys with a multipart upload in progress (billed until completed or aborted)."""
        listed = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix + "/")
        return sorted(u["Key"][len(self.prefix) + 1 :] for u in listed.get("Uploads", []))

    def registry_storage(self) -> dict:
        return self.gateway.registry_storage(self.bucket, "/" + self.prefix)

    def driver(self) -> StorageDriver:
        return S3Driver(
            self.bucket, self.prefix, endpoint=self.gateway.endpoint, access_key="any",
            secret_key="any",
        )  # fmt: skip


def age(root: Path, seconds: float) -> None:
    """Make every file below ``root`` look ``seconds`` old."""
    when = os.path.getmtime(root) - seconds
    for dirpath, _, files in os.walk(root):
        for name in files:
            os.utime(Path(dirpath) / name, (when, when))
