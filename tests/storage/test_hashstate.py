"""Resumable SHA-256 in Go's binary state format, checked against hashlib and against
the states docker-registry 2.8 itself writes."""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import pytest

from layerfs.storage.hashstate import HashStateError, ResumableSha256

from ..registry import DockerRegistry


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 1_000_003])
def test_matches_hashlib_and_survives_marshal(size: int) -> None:
    data = random.Random(size).randbytes(size)
    split = size // 3
    first = ResumableSha256(data[:split])
    state = first.marshal()
    assert len(state) == 108
    assert state[:4] == b"sha\x03"
    assert struct.unpack(">Q", state[-8:])[0] == split
    resumed = ResumableSha256.unmarshal(state)
    assert resumed.size == split
    resumed.update(data[split:])
    assert resumed.hexdigest() == hashlib.sha256(data).hexdigest()
    assert resumed.size == size
    # digest() must not disturb the running state
    resumed.update(b"tail")
    assert resumed.hexdigest() == hashlib.sha256(data + b"tail").hexdigest()


def test_update_accepts_buffers() -> None:
    data = bytearray(b"abc" * 1000)
    h = ResumableSha256()
    h.update(memoryview(data)[:1500])
    h.update(data[1500:])
    assert h.hexdigest() == hashlib.sha256(bytes(data)).hexdigest()


def test_copy_is_independent() -> None:
    h = ResumableSha256(b"abc")
    c = h.copy()
    c.update(b"def")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert c.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


@pytest.mark.parametrize(
    "state",
    [
        b"",
        b"sha\x03" + b"\0" * 103,  # one byte short
        b"md5\x01" + b"\0" * 104,  # wrong magic
        b"sha\x03" + b"\0" * 96 + struct.pack(">Q", 2**61 + 1),  # absurd length
    ],
)
def test_unmarshal_refuses_bad_states(state: bytes) -> None:
    with pytest.raises(HashStateError):
        ResumableSha256.unmarshal(state)


@pytest.mark.registry
@pytest.mark.parametrize("chunk", [1, 63, 64, 1_000_003])
def test_state_equals_docker_registry(
    docker_registry: DockerRegistry, store_dir: Path, chunk: int
) -> None:
    """docker-registry writes ``hashstates/sha256/<offset>`` after a PATCH; ours for
    the same bytes must be byte-identical."""
    data = random.Random(chunk).randbytes(chunk)
    location = docker_registry.start_upload("interop/hash")
    docker_registry.patch(location, data)
    upload_id = location.split("/blobs/uploads/")[1].split("?")[0]
    state_file = (
        store_dir
        / "docker/registry/v2/repositories/interop/hash/_uploads"
        / upload_id
        / "hashstates/sha256"
        / str(chunk)
    )
    assert state_file.read_bytes() == ResumableSha256(data).marshal()
