"""The page's 👍/👎: which store, which passages count as shown, and who may rate them.

The shown list of an answer is its context passages (``Answer.passages``), the ones the page gives buttons,
in page order; each rating must name a list the same demo user was shown and a chunk in it
(``FeedbackStore.rate`` refuses anything else). Ratings are keyed by chunk id in their own SQLite file, so
they outlive restarts and corpus rebuilds.
"""

from __future__ import annotations

from pathlib import Path

from demos.docqa.pipeline import Answer, DocQA
from resrank_rag.backbones import cache_dir
from resrank_rag.feedback import FeedbackStore, ShownItem, model_fingerprint

ANONYMOUS = "anonymous"
"""The user name of who picks no demo user (the page's *anonymous*)."""


def feedback_path(feedback_db: Path | None, index_path: str | None) -> str | Path:
    """Where the demo keeps ratings: ``feedback_db`` when given, in memory beside an in-memory index, else
    ``<cache>/demo/feedback.sqlite`` beside the default index."""
    if feedback_db is not None:
        return feedback_db
    return ":memory:" if index_path == ":memory:" else cache_dir() / "demo" / "feedback.sqlite"


class PageFeedback:
    """Records what the page shows each user and takes their ratings on it."""

    def __init__(self, qa: DocQA):
        self.qa = qa
        self.store: FeedbackStore = qa.feedback
        self.model = model_fingerprint(qa.index.model)

    def user_name(self, user: str | None) -> str:
        """The store's name for a demo user; an unknown user is a PermissionError."""
        self.qa.principal(user)  # refuses an unknown user while documents have access lists
        if user is None:
            return ANONYMOUS
        if user not in self.qa.users:
            raise PermissionError(f"unknown user {user!r}; the demo knows {', '.join(sorted(self.qa.users)) or 'none'}")
        return user

    def record(self, answer: Answer, user: str | None) -> str | None:
        """Store the answer's passages as shown to ``user``; the list id their ratings name (None: nothing shown)."""
        if not answer.passages:
            return None
        shown = [ShownItem(p.id, place, p.retrieval_rank) for place, p in enumerate(answer.passages, 1)]
        return self.store.record_shown(self.user_name(user), answer.search_query, self.qa.index.collection, shown,
                                       model=self.model, encoder=self.qa.index.model.encoder_fingerprint)

    def rate(self, list_id: str, user: str | None, chunk_id: str, label: int) -> dict[str, int]:
        """Store ``user``'s label on a chunk of their list (FeedbackError if it is not theirs); their labels on it."""
        name = self.user_name(user)
        self.store.rate(list_id, name, chunk_id, label)
        return self.store.ratings_of(name, list_id)

    def labels(self, list_id: str, user: str | None) -> dict[str, int]:
        """``user``'s labels on one of their lists (chunk id -> 1 or -1; empty for another user's list)."""
        return self.store.ratings_of(self.user_name(user), list_id)
