"""``paths.match`` against the layout table read as its docstring says: a path is the
first kind (in LAYOUT order) whose pattern it fills, or a directory on the way to one.
The tree ``match`` walks must answer exactly that, for paths on the layout and off it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from layerfs.storage import paths

LITERALS = sorted({s for p in paths.LAYOUT.values() for s in p if not s.startswith("{")})
ODD = ["", "sha256", "sha512", "ab", "ab" * 32, "v1", "x", "team", "a.b", "{name}", "_x"]
COMPONENT = st.sampled_from(LITERALS + ODD)


def reference(parts: paths.Parts) -> paths.Match | None:
    """The first pattern of LAYOUT that ``parts`` fills or leads into, tried in order."""
    fixed: dict[str, str] = {}
    if parts[:1] == ("repositories",):
        inside = paths.split_repository(parts)
        if inside is None:
            name = "/".join(parts[1:])
            return paths.Match(
                "layer_link", {"name": name}, True, "{name}" if name else "repositories"
            )
        if not inside[0]:
            return None
        parts, fixed = ("repositories", "{name}", *inside[1]), {"name": inside[0]}
    for kind, pattern in paths.LAYOUT.items():
        if len(parts) > len(pattern):
            continue
        fields = dict(fixed)
        for segment, part in zip(pattern, parts, strict=False):
            if segment.startswith("{") and segment != "{name}":
                fields[segment[1:-1]] = part
            elif not segment.startswith("{") and segment != part:
                break
        else:
            at = pattern[len(parts) - 1] if parts else ""
            return paths.Match(kind, fields, len(parts) < len(pattern), at)
    return None


@st.composite
def layout_paths(draw: st.DrawFn) -> paths.Parts:
    """A path along one pattern, cut anywhere, a repository name of one to three
    components, and perhaps one component swapped for another or one added."""
    pattern = draw(st.sampled_from(list(paths.LAYOUT.values())))
    parts: list[str] = []
    for segment in pattern:
        if segment == "{name}":
            parts += draw(
                st.lists(st.sampled_from(["a", "b", "team", "x.y"]), min_size=1, max_size=3)
            )
        elif segment.startswith("{"):
            parts.append(draw(COMPONENT))
        else:
            parts.append(segment)
    parts = parts[: draw(st.integers(0, len(parts)))]
    if parts and draw(st.booleans()):
        parts[draw(st.integers(0, len(parts) - 1))] = draw(COMPONENT)
    if draw(st.booleans()):
        parts.append(draw(COMPONENT))
    return tuple(parts)


@settings(max_examples=3000)
@given(st.one_of(layout_paths(), st.lists(COMPONENT, max_size=10).map(tuple)))
def test_match_is_the_first_pattern_a_path_fills(parts: paths.Parts) -> None:
    assert paths.match(parts) == reference(parts)


def test_every_kind_and_the_directories_on_its_way_are_found() -> None:
    for kind, pattern in paths.LAYOUT.items():
        filled = tuple("a" if s == "{name}" else s.strip("{}") for s in pattern)
        found = paths.match(filled)
        assert found is not None and found == reference(filled)
        assert found.kind == kind and not found.is_dir
        for depth in range(len(filled)):
            assert paths.match(filled[:depth]) == reference(filled[:depth])
