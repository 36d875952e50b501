"""Access control: who asks (a ``Principal``) and which chunks they may see, as a Qdrant payload filter.

A document's metadata ``allowed_groups`` lists the groups that may read it; ``"*"`` (``PUBLIC``) admits
everyone. A read made for a principal only ever sees chunks whose list holds one of the principal's
groups or ``"*"``: the filter is applied by Qdrant, so nothing else is a candidate, counted or returned.
A chunk without the field is seen by no principal (fail closed). See docs/security.md.

``read_filter`` is the one rule: every read path (``ResRankIndex`` search, count, scroll and delete, the
LlamaIndex and LangChain retrievers and rerankers over any Qdrant store) turns its principal into a
Qdrant filter through it, and it refuses a read without a principal on a store that holds access lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import models

__all__ = [
    "ACCESS_FIELD", "ACCESS_MARK", "HIDDEN", "INDEX_ACCESS_KEY", "PUBLIC", "AccessError", "Principal", "access_filter",
    "admits", "astore_read_filter", "check_access_list", "check_principal", "check_points", "combine_filters",
    "narrowest", "read_filter", "store_access_controlled", "store_read_filter",
]

ACCESS_FIELD = "allowed_groups"
PUBLIC = "*"
"""In an access list: every principal may read the document."""
HIDDEN: list[str] = []
"""An access list no principal matches: what a document gets while the list that governs it is unreadable."""
INDEX_ACCESS_KEY = f"metadata.{ACCESS_FIELD}"
"""Where the access list lives in a ``ResRankIndex`` (and a langchain-qdrant) payload."""
ACCESS_MARK = "access_control"
"""Collection metadata key a ``ResRankIndex`` sets once any point carries an access list."""


class AccessError(PermissionError):
    """A read of access-controlled documents that says for whom it is made neither way."""


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
        if not all(isinstance(g, str) and g.strip() for g in groups):
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


def _admitted(principal: Principal) -> list[str]:
    return sorted(principal.groups | {PUBLIC})


def access_filter(principal: Principal | None, key: str = INDEX_ACCESS_KEY) -> models.Filter | None:
    """The Qdrant condition admitting only chunks ``principal`` may read (None: no principal, or unrestricted).

    ``key`` is where the access list lives in the payload: ``metadata.allowed_groups`` in a
    ``ResRankIndex`` or a langchain-qdrant store, ``allowed_groups`` in a LlamaIndex ``QdrantVectorStore``.
    Read paths call ``read_filter``, which also refuses a read without a principal where one is needed.
    """
    principal = check_principal(principal)
    if principal is None or principal.unrestricted:
        return None
    return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchAny(any=_admitted(principal)))])


def admits(principal: Principal, groups: Iterable[str] | None) -> bool:
    """Whether ``principal`` may read a document whose access list is ``groups`` (None: it has none).

    The same rule as ``access_filter``, for what is not in Qdrant (the demo's list of unreadable files).
    """
    if check_principal(principal) is None:
        raise TypeError("admits needs a Principal")
    if principal.unrestricted:
        return True
    return groups is not None and bool(set(groups) & set(_admitted(principal)))


def no_principal(collection: str) -> AccessError:
    return AccessError(
        f"collection {collection!r} holds access-controlled documents ({ACCESS_FIELD}): pass "
        "principal=Principal(user_id, groups) for the authenticated user, or, in trusted back-office code "
        "only, principal=Principal.unrestricted_access()"
    )


def read_filter(
    principal: Principal | None,
    user_filter: models.Filter | None = None,
    *,
    access_controlled: bool,
    key: str = INDEX_ACCESS_KEY,
    collection: str = "",
) -> models.Filter | None:
    """The filter of one read: ``user_filter`` ANDed with what ``principal`` may read, so no filter widens it.

    Without a principal the read is refused (``AccessError``) when the store holds access lists
    (``access_controlled``), and unfiltered by access otherwise. ``Principal.unrestricted_access()`` reads everything.
    """
    principal = check_principal(principal)
    if principal is None and access_controlled:
        raise no_principal(collection)
    return combine_filters(user_filter, access_filter(principal, key))


def _carries_list(payload: Mapping | None, key: str) -> bool:
    value: Any = payload or {}
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def check_points(principal: Principal | None, payloads: Iterable[Mapping | None], key: str, collection: str) -> None:
    """Refuse what a read without a principal returned once any of it carries an access list.

    Catches lists written by another process after the read decided no principal was needed.
    """
    if principal is None and any(_carries_list(payload, key) for payload in payloads):
        raise no_principal(collection)


def _listed(key: str) -> models.Filter:
    return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])


def store_access_controlled(client, collection: str, key: str) -> bool:
    """Whether a Qdrant collection holds access lists: marked by ``ResRankIndex``, or any point carries one."""
    if (client.get_collection(collection).config.metadata or {}).get(ACCESS_MARK):
        return True
    return client.count(collection, count_filter=_listed(key), exact=False).count > 0


async def astore_access_controlled(aclient, collection: str, key: str) -> bool:
    """``store_access_controlled`` through an ``AsyncQdrantClient``."""
    if ((await aclient.get_collection(collection)).config.metadata or {}).get(ACCESS_MARK):
        return True
    return (await aclient.count(collection, count_filter=_listed(key), exact=False)).count > 0


def store_read_filter(client, collection: str, principal, user_filter=None, *, key: str) -> models.Filter | None:
    """``read_filter`` for a Qdrant collection another library wrote (whether it holds lists is read from it)."""
    controlled = check_principal(principal) is None and store_access_controlled(client, collection, key)
    return read_filter(principal, user_filter, access_controlled=controlled, key=key, collection=collection)


async def astore_read_filter(aclient, collection: str, principal, user_filter=None, *, key: str) -> models.Filter | None:
    """``store_read_filter`` through an ``AsyncQdrantClient``."""
    controlled = check_principal(principal) is None and await astore_access_controlled(aclient, collection, key)
    return read_filter(principal, user_filter, access_controlled=controlled, key=key, collection=collection)


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


def narrowest(first: list[str] | None, second: list[str] | None) -> list[str] | None:
    """The access list admitting only who both admit (``"*"``: everyone; None: no list given, so the other)."""
    if first is None or second is None:
        return second if first is None else first
    if PUBLIC in first:
        return sorted(second)
    if PUBLIC in second:
        return sorted(first)
    return sorted(set(first) & set(second))
