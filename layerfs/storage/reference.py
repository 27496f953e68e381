"""Grammar of repository names and tags (distribution/reference)."""

from __future__ import annotations

import re

from .errors import InvalidNameError, InvalidTagError

NAME_MAX = 255
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Directory names inside a repository that can never be name components.
_RESERVED = {"_layers", "_manifests", "_uploads"}


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidNameError("repository name is empty")
    if len(name) > NAME_MAX:
        raise InvalidNameError(
            f"repository name is {len(name)} characters long; at most {NAME_MAX} allowed"
        )
    if not NAME_RE.fullmatch(name) or any(part in _RESERVED for part in name.split("/")):
        raise InvalidNameError(
            f"invalid repository name {name!r}: lowercase letters and digits joined by"
            " '.', '_', '__' or '-', components separated by '/'"
        )
    return name


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.fullmatch(tag):
        raise InvalidTagError(f"invalid tag {tag!r}: want [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
    return tag
