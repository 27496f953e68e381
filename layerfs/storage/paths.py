"""Where the registry keeps each thing (distribution's registry/storage/paths.go).

Every function returns a driver path; nothing here touches a driver.
"""

from __future__ import annotations

from .digest import Digest

ROOT = "/docker/registry/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"


def blob_dir(d: Digest) -> str:
    return f"{BLOBS}/{d.algorithm}/{d.hex[:2]}/{d.hex}"


def blob_data(d: Digest) -> str:
    return f"{blob_dir(d)}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layers_dir(name: str) -> str:
    return f"{repository(name)}/_layers"


def layer_link(name: str, d: Digest) -> str:
    return f"{layers_dir(name)}/{d.algorithm}/{d.hex}/link"


def uploads_dir(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads_dir(name)}/{upload_id}"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def upload_started_at(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/startedat"


def upload_name(name: str, upload_id: str) -> str:
    """The file name a user gave an upload (layerfs only; the registry ignores it)."""
    return f"{upload_dir(name, upload_id)}/name"


def upload_hash_states(name: str, upload_id: str, algorithm: str) -> str:
    return f"{upload_dir(name, upload_id)}/hashstates/{algorithm}"


def upload_hash_state(name: str, upload_id: str, algorithm: str, offset: int) -> str:
    return f"{upload_hash_states(name, upload_id, algorithm)}/{offset}"


def manifests_dir(name: str) -> str:
    return f"{repository(name)}/_manifests"


def manifest_revisions(name: str) -> str:
    return f"{manifests_dir(name)}/revisions"


def manifest_revision_link(name: str, d: Digest) -> str:
    return f"{manifest_revisions(name)}/{d.algorithm}/{d.hex}/link"


def tags_dir(name: str) -> str:
    return f"{manifests_dir(name)}/tags"


def tag_dir(name: str, tag: str) -> str:
    return f"{tags_dir(name)}/{tag}"


def tag_current_link(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/current/link"


def tag_index_dir(name: str, tag: str) -> str:
    return f"{tag_dir(name, tag)}/index"


def tag_index_link(name: str, tag: str, d: Digest) -> str:
    return f"{tag_index_dir(name, tag)}/{d.algorithm}/{d.hex}/link"
