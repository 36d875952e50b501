"""Checking a caller's Qdrant filter: its type, and that it reads only fields a ResRankIndex point has."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from qdrant_client import models

from resrank_rag.index.points import PAYLOAD_FIELDS


def _condition_keys(condition) -> Iterator[str]:
    """Payload keys a Qdrant filter (or condition) reads."""
    if isinstance(condition, models.Filter):
        for part in (condition.must, condition.should, condition.must_not):
            for item in part if isinstance(part, list) else [part] if part is not None else []:
                yield from _condition_keys(item)
        if condition.min_should is not None:
            for item in condition.min_should.conditions:
                yield from _condition_keys(item)
    elif isinstance(condition, models.FieldCondition):
        yield condition.key
    elif isinstance(condition, (models.IsEmptyCondition, models.IsNullCondition)):
        yield (condition.is_empty if isinstance(condition, models.IsEmptyCondition) else condition.is_null).key
    elif isinstance(condition, models.NestedCondition):
        yield condition.nested.key


def check_filter(filter, fields: Sequence[str] | None = PAYLOAD_FIELDS) -> models.Filter | None:  # noqa: A002
    """``filter`` if it is None or a Qdrant ``Filter`` (over this index's payload ``fields``; None: any
    payload, e.g. another library's store), else a clear error."""
    if filter is None:
        return None
    if not isinstance(filter, models.Filter):
        raise TypeError(
            f"filter must be a qdrant_client.models.Filter, got {type(filter).__name__}; e.g. models.Filter(must="
            "[models.FieldCondition(key='metadata.dept', match=models.MatchValue(value='HR'))])"
        )
    for key in _condition_keys(filter) if fields is not None else ():
        if key.split(".")[0].split("[")[0] not in fields:
            raise ValueError(
                f"filter key {key!r} is not a field of a ResRankIndex point ({', '.join(fields)}); "
                f"document metadata lives under 'metadata.', e.g. 'metadata.{key}'"
            )
    return filter
