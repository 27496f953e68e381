"""du's accounting and prune's plan against a model, on random stores: images that
share layers, indexes of images and of indexes, in several repositories, tagged or
not, some tags pruned. The model is worked out here from the manifests as written,
without layerfs's reading of them."""

from __future__ import annotations

import json
import re

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerfs.drivers import MemoryDriver
from layerfs.passes.prune import Policy, apply_prune, plan_prune
from layerfs.passes.usage import Usage, read_store
from layerfs.storage import Digest, paths

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REPOS = ["app/a", "app/b"]
TAGS = ["v1", "v2", "v3", "latest"]


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}


@st.composite
def stores(draw):  # type: ignore[no-untyped-def]
    """Blobs, manifests (each a JSON document) and, per repository, its revisions and
    tags."""
    layers = [f"layer {i}".encode() * (i + 1) for i in range(draw(st.integers(1, 5)))]
    manifests: list[bytes] = []
    for i in range(draw(st.integers(1, 5))):
        chosen = draw(st.lists(st.sampled_from(layers), min_size=1, max_size=3, unique=True))
        config = f'{{"image": {i}}}'.encode()
        manifests.append(json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", b) for b in chosen],
        }).encode())  # fmt: skip
    for _ in range(draw(st.integers(0, 3))):  # indexes of what exists so far
        children = draw(st.lists(st.sampled_from(manifests), min_size=1, max_size=3, unique=True))
        manifests.append(json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [descriptor(json.loads(c)["mediaType"], c) for c in children],
        }).encode())  # fmt: skip
    repos = {}
    for name in REPOS:
        held = draw(st.lists(st.sampled_from(manifests), min_size=1, unique=True))
        tags = draw(st.dictionaries(st.sampled_from(TAGS), st.sampled_from(held), max_size=4))
        repos[name] = (held, tags)
    orphans = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=2, unique=True))
    return layers, manifests, repos, orphans


class Model:
    def __init__(self, layers, manifests, orphans) -> None:  # type: ignore[no-untyped-def]
        self.docs = {Digest.of(m): json.loads(m) for m in manifests}
        self.sizes = {Digest.of(b): len(b) for b in [*layers, *manifests, *orphans]}
        for m in manifests:
            config = json.loads(m).get("config")
            if config:
                self.sizes[Digest.parse(config["digest"])] = config["size"]

    def closure(self, digest: Digest) -> set[Digest]:
        doc = self.docs[digest]
        found = {digest}
        for d in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
            found.add(Digest.parse(d["digest"]))
        for child in doc.get("manifests", []):
            found |= self.closure(Digest.parse(child["digest"]))
        return found

    def manifests_below(self, digest: Digest) -> set[Digest]:
        found = {digest}
        for child in self.docs[digest].get("manifests", []):
            found |= self.manifests_below(Digest.parse(child["digest"]))
        return found

    def bytes(self, blobs: set[Digest]) -> int:
        return sum(self.sizes[b] for b in blobs)


async def write(driver: MemoryDriver, layers, manifests, repos, orphans) -> None:  # type: ignore[no-untyped-def]
    for m in manifests:
        config = json.loads(m).get("config")
        if config:
            await driver.put_content(
                paths.blob_data(Digest.parse(config["digest"])),
                f'{{"image": {manifests.index(m)}}}'.encode(),
            )
    for blob in [*layers, *manifests, *orphans]:
        await driver.put_content(paths.blob_data(Digest.of(blob)), blob)
    for name, (held, tags) in repos.items():
        for m in held:
            d = Digest.of(m)
            await driver.put_content(paths.manifest_revision_link(name, d), str(d).encode())
        for tag, m in tags.items():
            d = Digest.of(m)
            await driver.put_content(paths.tag_current_link(name, tag), str(d).encode())
            await driver.put_content(paths.tag_index_link(name, tag, d), str(d).encode())


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(stores())
def test_du_splits_every_byte_as_the_model_does(store) -> None:  # type: ignore[no-untyped-def]
    layers, manifests, repos, orphans = store
    model = Model(layers, manifests, orphans)

    async def check() -> None:
        driver = MemoryDriver()
        await write(driver, layers, manifests, repos, orphans)
        usage = Usage(await read_store(driver))
        tagged = set().union(*(model.closure(Digest.of(m))
                               for _, tags in repos.values() for m in tags.values()))  # fmt: skip
        referenced = set().union(*(model.closure(Digest.of(m))
                                   for held, _ in repos.values() for m in held))  # fmt: skip
        summary = usage.summary()
        assert summary.tagged.bytes == model.bytes(tagged)
        assert summary.untagged.bytes == model.bytes(referenced - tagged)
        assert summary.unreferenced.bytes == model.bytes(set(model.sizes) - referenced)
        assert summary.blobs.bytes == model.bytes(set(model.sizes))
        rows = {r.repository: r for r in usage.rows("repo")}
        for name, (held, _) in repos.items():
            mine = set().union(*(model.closure(Digest.of(m)) for m in held))
            theirs = [h for n, (h, _) in repos.items() if n != name]
            others = set().union(*(model.closure(Digest.of(m)) for h in theirs for m in h))
            if name in rows:
                assert rows[name].referenced.bytes == model.bytes(mine)
                assert rows[name].unique.bytes == model.bytes(mine - others)
        assert usage.odd() == []

    trio.run(check)


@SETTINGS
@given(stores(), st.sets(st.sampled_from(TAGS)))
def test_prune_deletes_exactly_what_no_remaining_tag_or_index_needs(store, kept) -> None:  # type: ignore[no-untyped-def]
    layers, manifests, repos, orphans = store
    model = Model(layers, manifests, orphans)
    keep = re.compile("|".join(sorted(kept)) or "(?!)")

    async def check() -> None:
        driver = MemoryDriver()
        await write(driver, layers, manifests, repos, orphans)
        plan = await plan_prune(driver, "app/*", Policy(keep_tags=keep))
        assert await apply_prune(driver, plan) == []
        for name, (held, tags) in repos.items():
            revisions = {Digest.of(m) for m in held}
            doomed = {t: Digest.of(m) for t, m in tags.items() if t not in kept}
            remaining = {t: Digest.of(m) for t, m in tags.items() if t in kept}
            reach = set().union(*(model.manifests_below(d) for d in doomed.values()))
            candidates = reach & revisions
            roots = set(remaining.values()) | (revisions - candidates)
            needed = set().union(*(model.manifests_below(d) for d in roots))
            want = revisions - (candidates - needed)
            repo = driver  # what is left, read straight from the layout
            left_tags = {
                p.rsplit("/", 1)[1] for p in await repo.list_if_present(paths.tags_dir(name))
            }
            assert left_tags == set(remaining)
            left = set()
            for d in revisions:
                if await driver.exists(paths.manifest_revision_link(name, d)):
                    left.add(d)
            assert left == want
            # every remaining tag still resolves to a manifest whose children are held
            for d in remaining.values():
                assert model.manifests_below(d) & revisions <= left

    trio.run(check)


def test_indexes_nested_deeper_than_the_interpreter_recurses() -> None:
    """A chain of 1,500 indexes, each naming the one below, over one image: du, gc and
    prune walk it without recursion (it once raised RecursionError)."""
    from layerfs.passes.gc import GarbageCollector

    image = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config":
                        descriptor("application/vnd.oci.image.config.v1+json", b"{}"),
                        "layers": []}).encode()  # fmt: skip
    chain = [image]
    for _ in range(1500):
        below = [descriptor(OCI_INDEX, chain[-1])]
        chain.append(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": below}).encode()
        )

    async def check() -> None:
        driver = MemoryDriver()
        await write(driver, [], chain, {"app/a": ([chain[-1]], {"v1": chain[-1]})}, [])
        await driver.put_content(paths.blob_data(Digest.of(b"{}")), b"{}")
        summary = Usage(await read_store(driver)).summary()
        assert summary.tagged.blobs == len(chain) + 1  # every index, the image, its config
        assert summary.unreferenced.blobs == 0
        result = await GarbageCollector(driver, dry_run=True).run()
        assert result.complete and result.deleted == []
        assert len(result.marked) == len(chain) + 1
        plan = await plan_prune(driver, "app/*", Policy(keep_last=0))
        assert [len(r.tags) for r in plan.repositories] == [1]
        assert plan.repositories[0].manifests == [Digest.of(chain[-1])]

    trio.run(check)


def test_prune_looks_again_before_it_deletes() -> None:
    """Between the plan and the deletes, a pruned tag is pushed again and an index
    naming a pruned manifest is pushed: both stay."""
    images = [json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config":
                          descriptor("application/vnd.oci.image.config.v1+json", b"{}"),
                          "layers": [], "n": n}).encode() for n in range(3)]  # fmt: skip
    old, other, third = (Digest.of(m) for m in images)

    async def check() -> None:
        driver = MemoryDriver()
        tags = {"v1": images[0], "v2": images[1], "v3": images[2]}
        await write(driver, [], images, {"app/a": (images, tags)}, [])
        await driver.put_content(paths.blob_data(Digest.of(b"{}")), b"{}")
        plan = await plan_prune(driver, "app/a", Policy(keep_tags=re.compile("v3")))
        assert [t.name for t in plan.repositories[0].tags] == ["v1", "v2"]
        assert plan.repositories[0].manifests == sorted([old, other], key=str)
        # meanwhile: v1 pushed again (to the third image); an index naming v2's image
        link = paths.tag_current_link("app/a", "v1")
        await driver.put_content(link, str(third).encode())
        below = [descriptor(OCI_MANIFEST, images[1])]
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": below})
        index = index.encode()
        await write(driver, [], [index], {"app/a": ([index], {"multi": index})}, [])
        kept = await apply_prune(driver, plan)
        why = "still needed, or its tag moved, since the plan"
        assert kept == [f"tag app/a:v1 (names {third} since)"] + [
            f"manifest app/a@{d} ({why})" for d in sorted([old, other], key=str)
        ]
        assert await driver.exists(link)  # v1 stays
        assert not await driver.exists(paths.tag_dir("app/a", "v2") + "/current/link")
        assert await driver.exists(paths.manifest_revision_link("app/a", other))

    trio.run(check)
