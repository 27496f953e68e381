"""A docker-registry config.yml as a store: so operators mount exactly what their
registry serves (``layerfs mount --config /etc/docker/registry/config.yml MNT``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .drivers import FilesystemDriver, StorageDriver


class ConfigError(Exception):
    """A config file layerfs cannot mount; the message says which part."""


@dataclass(frozen=True)
class RegistryStore:
    driver: StorageDriver
    read_only: bool


def _section(doc: dict, *keys: str) -> dict:
    for key in keys:
        doc = doc.get(key) or {} if isinstance(doc, dict) else {}
    return doc if isinstance(doc, dict) else {}


def store_from_config(path: str | Path) -> RegistryStore:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a registry configuration")
    storage = _section(doc, "storage")
    read_only = bool(_section(storage, "maintenance", "readonly").get("enabled", False))
    if "filesystem" in storage:
        root = _section(storage, "filesystem").get("rootdirectory", "/var/lib/registry")
        return RegistryStore(FilesystemDriver(str(root)), read_only)
    if "s3" in storage:
        return RegistryStore(_s3_driver(_section(storage, "s3"), path), read_only)
    kinds = ", ".join(k for k in storage if k not in ("cache", "delete", "maintenance", "redirect"))
    raise ConfigError(f"{path}: storage driver {kinds or 'none'} is not supported (filesystem, s3)")


def _s3_driver(s3: dict, path: str | Path) -> StorageDriver:
    from .drivers.s3 import DEFAULT_PART, S3Driver

    if not s3.get("bucket"):
        raise ConfigError(f"{path}: storage.s3.bucket is missing")
    return S3Driver(
        str(s3["bucket"]),
        str(s3.get("rootdirectory", "")),
        endpoint=s3.get("regionendpoint") or None,
        region=s3.get("region") or None,
        access_key=s3.get("accesskey") or None,
        secret_key=s3.get("secretkey") or None,
        part_size=int(s3.get("chunksize", DEFAULT_PART)),
    )
