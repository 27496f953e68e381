"""Manifests and tags: what put verifies, what get and delete do, and refusals that
leave the store as it was."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerfs.drivers import MemoryDriver, PathNotFoundError, StorageDriver
from layerfs.storage import (
    Digest,
    InvalidLinkError,
    InvalidNameError,
    InvalidTagError,
    ManifestBlobsUnknownError,
    ManifestInvalidError,
    ManifestUnknownError,
    Registry,
    TagUnknownError,
    manifests,
    parse_manifest,
    paths,
)

from ..images import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, descriptor, make_image
from .test_uploads import upload_bytes


async def snapshot(driver: StorageDriver) -> dict[str, bytes]:
    """Every file of the store with its content."""
    files = {}
    try:
        async for info in driver.walk("/docker"):
            if not info.is_dir:
                files[info.path] = await driver.get_content(info.path)
    except PathNotFoundError:
        return {}
    return files


async def push_blobs(registry: Registry, name: str, blobs: list[bytes]) -> None:
    for blob in blobs:
        await upload_bytes(registry, name, blob)


@pytest.mark.parametrize("docker", [False, True])
async def test_put_get_tag_resolve(driver: StorageDriver, docker: bool) -> None:
    registry = Registry(driver)
    image = make_image(1, docker=docker)
    repo = registry.repository("app/web")
    await push_blobs(registry, "app/web", [*image.layers, image.config])
    digest = await repo.manifests.put(image.manifest)
    assert str(digest) == image.manifest_digest
    assert await repo.manifests.get(digest) == image.manifest
    assert await repo.manifests.exists(digest)
    assert (await repo.manifests.get_parsed(digest)).layers[0].digest == Digest.of(image.layers[0])
    assert (
        await driver.get_content(paths.manifest_revision_link("app/web", digest))
        == str(digest).encode()
    )
    # manifests are blobs, but not layers of the repository
    assert not await repo.layers.exists(digest)

    await repo.tags.tag("v1", digest)
    assert await repo.tags.resolve("v1") == digest
    assert await driver.get_content(paths.tag_current_link("app/web", "v1")) == str(digest).encode()
    assert (
        await driver.get_content(paths.tag_index_link("app/web", "v1", digest))
        == str(digest).encode()
    )
    assert await repo.tags.list() == ["v1"]
    assert await registry.repositories() == ["app/web"]


async def test_missing_blobs_are_all_listed(driver: StorageDriver) -> None:
    registry = Registry(driver)
    image = make_image(2, layers=3)
    repo = registry.repository("app/missing")
    await push_blobs(registry, "app/missing", [image.layers[1]])
    before = await snapshot(driver)
    with pytest.raises(ManifestBlobsUnknownError) as info:
        await repo.manifests.put(image.manifest)
    missing = {Digest.of(image.config), Digest.of(image.layers[0]), Digest.of(image.layers[2])}
    assert set(info.value.missing) == missing
    for digest in missing:
        assert str(digest) in str(info.value)
    assert await snapshot(driver) == before


async def test_blob_linked_elsewhere_does_not_count(driver: StorageDriver) -> None:
    registry = Registry(driver)
    image = make_image(3)
    await push_blobs(registry, "other/repo", [*image.layers, image.config])
    with pytest.raises(ManifestBlobsUnknownError):
        await registry.repository("app/thief").manifests.put(image.manifest)


async def test_foreign_layers_need_not_be_present(driver: StorageDriver) -> None:
    registry = Registry(driver)
    image = make_image(4, layers=1)
    await push_blobs(registry, "app/foreign", [*image.layers, image.config])
    doc = json.loads(image.manifest)
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": str(Digest.of(b"elsewhere")),
        "size": 9,
        "urls": ["https://example.com/layer"],
    }
    doc["layers"].append(foreign)
    await registry.repository("app/foreign").manifests.put(json.dumps(doc).encode())


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
async def test_index_needs_its_manifests(driver: StorageDriver, media_type: str) -> None:
    registry = Registry(driver)
    repo = registry.repository("app/multi")
    images = [make_image(10 + i, layers=1) for i in range(2)]
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {**descriptor(OCI_MANIFEST, im.manifest), "platform": {"os": "linux"}}
                for im in images
            ],
        }
    ).encode()
    await push_blobs(registry, "app/multi", [*images[0].layers, images[0].config])
    await repo.manifests.put(images[0].manifest)
    with pytest.raises(ManifestBlobsUnknownError) as info:
        await repo.manifests.put(index)
    assert info.value.missing == [Digest.parse(images[1].manifest_digest)]
    await push_blobs(registry, "app/multi", [*images[1].layers, images[1].config])
    await repo.manifests.put(images[1].manifest)
    digest = await repo.manifests.put(index)
    parsed = await repo.manifests.get_parsed(digest)
    assert parsed.is_index
    assert [m.digest for m in parsed.manifests] == [
        Digest.parse(im.manifest_digest) for im in images
    ]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json at all", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schemaVersion": 1, "name": "x", "history": []}', "fsLayers"),
        (
            json.dumps(
                {"schemaVersion": 1, "fsLayers": [{"blobSum": "sha256:abc"}], "history": [{}]}
            ).encode(),
            "blobSum",
        ),
        (
            json.dumps(
                {"schemaVersion": 1, "fsLayers": [{"blobSum": str(Digest.of(b""))}], "history": []}
            ).encode(),
            "history",
        ),
        (b'{"schemaVersion": 3}', "schemaVersion"),
        (json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(), "media type"),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), "config"),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "x", "digest": "sha256:abc", "size": 1},
                    "layers": [],
                }
            ).encode(),
            "config.digest",
        ),
        (
            json.dumps(
                {
                    "schemaVersion": 2,
                    "config": {"mediaType": "x", "digest": str(Digest.of(b"")), "size": -1},
                    "layers": [],
                }
            ).encode(),
            "size",
        ),
    ],
)
async def test_invalid_manifests(driver: StorageDriver, payload: bytes, reason: str) -> None:
    registry = Registry(driver)
    before = await snapshot(driver)
    with pytest.raises(ManifestInvalidError) as info:
        await registry.repository("app/bad").manifests.put(payload)
    assert reason in str(info.value)
    assert await snapshot(driver) == before
    with pytest.raises(ManifestInvalidError):
        parse_manifest(payload)


async def test_delete_revision_untags(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("app/del")
    image, other = make_image(20, layers=1), make_image(21, layers=1)
    for im in (image, other):
        await push_blobs(registry, "app/del", [*im.layers, im.config])
    first = await repo.manifests.put(image.manifest)
    second = await repo.manifests.put(other.manifest)
    await repo.tags.tag("a", first)
    await repo.tags.tag("b", first)
    await repo.tags.tag("c", second)
    await repo.manifests.delete(first, repo.tags)
    assert not await repo.manifests.exists(first)
    assert await repo.tags.list() == ["c"]
    with pytest.raises(ManifestUnknownError):
        await repo.manifests.get(first)
    with pytest.raises(ManifestUnknownError):
        await repo.manifests.delete(first, repo.tags)
    # the blob itself stays until garbage collection
    assert await registry.blobs.exists(first)


async def test_retag_keeps_index(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("app/retag")
    digests = []
    for seed in (30, 31):
        image = make_image(seed, layers=1)
        await push_blobs(registry, "app/retag", [*image.layers, image.config])
        digests.append(await repo.manifests.put(image.manifest))
        await repo.tags.tag("latest", digests[-1])
    assert await repo.tags.resolve("latest") == digests[1]
    index_dir = paths.tag_index_dir("app/retag", "latest")
    assert sorted(await driver.list(index_dir)) == [f"{index_dir}/sha256"]
    assert len(await driver.list(f"{index_dir}/sha256")) == 2
    assert await repo.tags.tags_of(digests[1]) == ["latest"]
    await repo.tags.untag("latest")
    with pytest.raises(TagUnknownError):
        await repo.tags.resolve("latest")
    with pytest.raises(TagUnknownError):
        await repo.tags.untag("latest")


async def test_tag_refusals(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("app/tags")
    unknown = Digest.of(b"no such manifest")
    with pytest.raises(ManifestUnknownError):
        await repo.tags.tag("v1", unknown)
    for bad in ("", ".x", "a/b", "x" * 129):
        with pytest.raises(InvalidTagError):
            await repo.tags.tag(bad, unknown)
        with pytest.raises(InvalidTagError):
            await repo.tags.resolve(bad)
    assert await snapshot(driver) == {}


async def test_unparsable_links_are_reported(driver: StorageDriver) -> None:
    registry = Registry(driver)
    repo = registry.repository("app/links")
    digest = await upload_bytes(registry, "app/links", b"layer")
    await driver.put_content(paths.layer_link("app/links", digest), b"garbage")
    await driver.put_content(paths.tag_current_link("app/links", "bad"), b"sha256:short")
    with pytest.raises(InvalidLinkError):
        await repo.layers.stat(digest)
    assert not await repo.layers.exists(digest)
    with pytest.raises(InvalidLinkError):
        await repo.tags.resolve("bad")
    # the blob under the broken link is untouched
    assert await registry.blobs.get(digest) == b"layer"


@pytest.mark.parametrize("name", ["Upper/case", "a/../b", "/lead", "a//b", "a" * 256, "a/_layers"])
def test_invalid_repository_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        Registry(MemoryDriver()).repository(name)


_ODD = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=3))
_DESCRIPTOR_FIELDS = {
    "mediaType": st.one_of(st.sampled_from([OCI_MANIFEST, ""]), _ODD),
    "digest": st.one_of(
        st.sampled_from(
            [
                str(Digest.of(b"a")),
                str(Digest.of(b"a")).upper(),
                str(Digest.of(b"a")) + "\n",
                "sha512:" + "ab" * 64,
                "sha256:" + "0" * 63,
            ]
        ),
        _ODD,
    ),
    "size": st.one_of(st.integers(-2, 2**40), _ODD),
    "urls": st.one_of(st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=2), _ODD),
    "annotations": _ODD,
}


@settings(max_examples=500, deadline=None)
@given(
    raw=st.one_of(
        st.fixed_dictionaries({}, optional=_DESCRIPTOR_FIELDS),
        st.fixed_dictionaries({k: v for k, v in _DESCRIPTOR_FIELDS.items() if k != "urls"}),
        _ODD,
    )
)
def test_a_descriptor_read_in_one_go_is_the_one_read_rule_by_rule(raw: object) -> None:
    """The quick way through a descriptor gives what the checks one at a time give,
    and refuses nothing they accept."""
    try:
        expected: object = manifests._checked_descriptor(raw, "layers[0]")
    except ManifestInvalidError as exc:
        expected = str(exc)
    try:
        got: object = manifests._descriptor(raw, "layers[0]")
    except ManifestInvalidError as exc:
        got = str(exc)
    assert got == expected
    if not isinstance(got, str):
        assert type(got.digest) is Digest and type(got.urls) is tuple


@settings(max_examples=200, deadline=None)
@given(
    content=st.one_of(
        st.sampled_from(
            [
                str(Digest.of(b"a")).encode(),
                str(Digest.of(b"b")).encode(),
                str(Digest.of(b"a")).encode() + b"\n",
                str(Digest.of(b"a")).upper().encode(),
                b"sha512:" + b"ab" * 64,
                "sha256:é".encode(),
            ]
        ),
        st.binary(max_size=80),
    ),
    expected=st.sampled_from([None, Digest.of(b"a"), Digest("sha512", "ab" * 64)]),
)
def test_a_link_read_against_the_digest_it_should_hold_is_read_as_without(
    content: bytes, expected: Digest | None
) -> None:
    """``decode_link`` with the digest a link is expected to name gives what it gives
    without: the digest, or the same refusal."""
    from layerfs.storage.links import decode_link

    def outcome(expect: Digest | None) -> object:
        try:
            found = decode_link("/r/link", content, expect)
        except InvalidLinkError as exc:
            return str(exc)
        assert type(found) is Digest
        return found

    assert outcome(expected) == outcome(None)
