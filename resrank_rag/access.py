"""Access control: who asks (a ``Principal``) and which chunks they may see, as a Qdrant payload filter.

A document's metadata ``allowed_groups`` lists the groups that may read it; ``"*"`` (``PUBLIC``) admits
everyone. A search made for a principal only ever sees chunks whose list holds one of the principal's
groups or ``"*"``: the filter is applied by Qdrant in the first stage, so nothing else is a candidate.
A chunk without the field is seen by no principal (fail closed). See docs/security.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from qdrant_client import models

__all__ = [
    "ACCESS_FIELD", "PUBLIC", "AccessError", "Principal", "access_filter", "check_access_list", "combine_filters",
]

ACCESS_FIELD = "allowed_groups"
PUBLIC = "*"
"""In an access list: every principal may read the document."""


class AccessError(PermissionError):
    """A search of access-controlled documents that says for whom it is made neither way."""


@dataclass(frozen=True)
class Principal:
    """The user a search is made for: an id (for logs) and the groups your authentication vouches for.

    ``Principal.unrestricted()`` is for trusted back-office code only (indexing checks, admin tools): it
    sees every chunk. Never build a principal from groups a client sent; look them up after authenticating.
    """

    id: str
    groups: frozenset[str] = field(default_factory=frozenset)
    unrestricted: bool = False

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("Principal id must be a non-empty string, e.g. Principal('alice', ['hr'])")
        if isinstance(self.groups, str):
            raise TypeError(f"groups must be a list of group names, not one string; use [{self.groups!r}]")
        groups = frozenset(self.groups)
        if not all(isinstance(g, str) and g for g in groups):
            raise ValueError(f"groups must be non-empty strings, got {sorted(map(repr, groups))}")
        object.__setattr__(self, "groups", groups)

    @classmethod
    def unrestricted_access(cls, id: str = "trusted") -> Principal:  # noqa: A002
        """A principal that sees everything: for trusted code, never for a request from a user."""
        return cls(id, frozenset(), unrestricted=True)


def check_principal(principal) -> Principal | None:
    if principal is not None and not isinstance(principal, Principal):
        raise TypeError(
            f"principal must be a resrank_rag.access.Principal, got {type(principal).__name__}; "
            "e.g. Principal('alice', groups=['hr', 'staff'])"
        )
    return principal


def access_filter(principal: Principal | None, key: str = f"metadata.{ACCESS_FIELD}") -> models.Filter | None:
    """The Qdrant filter admitting only chunks ``principal`` may read (None: no principal, or unrestricted).

    ``key`` is where the access list lives in the payload: ``metadata.allowed_groups`` in a
    ``ResRankIndex`` or a langchain-qdrant store, ``allowed_groups`` in a LlamaIndex ``QdrantVectorStore``.
    """
    principal = check_principal(principal)
    if principal is None or principal.unrestricted:
        return None
    admitted = sorted(principal.groups | {PUBLIC})
    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchAny(any=admitted))])


def combine_filters(*filters: models.Filter | None) -> models.Filter | None:
    """All given filters at once (a chunk must pass each); None when none is given."""
    given = [f for f in filters if f is not None]
    if len(given) < 2:
        return given[0] if given else None
    return models.Filter(must=given)


def check_access_list(value, where: str) -> list[str]:
    """``value`` as an access list (a list of group names), or an error naming ``where`` it came from."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, dict):
        raise ValueError(f"{where}: {ACCESS_FIELD} must be a list of group names (or '*'), got {value!r}")
    groups = list(value)
    if not all(isinstance(g, str) and g.strip() for g in groups):
        raise ValueError(f"{where}: {ACCESS_FIELD} must hold non-empty group names, got {groups!r}")
    return sorted({g.strip() for g in groups})
