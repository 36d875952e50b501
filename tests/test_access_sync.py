"""Issue 26: syncing a folder keeps access lists right when files, lists and ids go wrong.

A readable list applies even when its file cannot be read; a broken list hides what it governs and is
named; a damaged JSONL line loses no document; a sidecar left behind by a rename keeps the file hidden;
a section cannot widen its document's list; a chunk id of another document is refused, not overwritten;
clashing JSONL ids name both files; a short PDF still gets one chunk per page.
"""

import json

import pytest
from typer.testing import CliRunner

from demos.sample_company import pdf
from resrank_rag.cli import app
from resrank_rag.documents import Document, ReadReport, chunk_document, read_documents
from resrank_rag.index import Principal, ResRankIndex

GUEST = Principal("guest")
STAFF = Principal("sam", ["staff"])
HR = Principal("ann", ["hr"])
MANAGERS = Principal("max", ["managers"])
EVERYTHING = Principal.unrestricted_access()


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def lines(*rows):
    return "".join(json.dumps(row) + "\n" for row in rows)


def sync(index, folder):
    """What `resrank index FOLDER --sync` does: read with a report, keep what could not be read."""
    report = ReadReport(echo=lambda _: None)
    result = index.sync(read_documents(folder, report), keep=report.unread, chunk_size=40, overlap=5)
    return result, report


def seen(index, principal) -> set[str]:
    return {hit.doc_id for hit in index.scroll(principal=principal)}


def test_a_readable_access_list_applies_although_its_file_cannot_be_read(tmp_path, tiny):
    """Issue 26 (3): hr/.access.json narrowed while plan.jsonl had a truncated last line: guest kept seeing it."""
    write(tmp_path / ".access.json", json.dumps({"allowed_groups": ["*"]}))
    write(tmp_path / "hr" / ".access.json", json.dumps({"allowed_groups": ["*"]}))
    write(tmp_path / "hr" / "plan.jsonl", lines({"id": "p1", "text": "Plan one."}, {"id": "p2", "text": "Plan two."}))
    (tmp_path / "hr" / "memo.pdf").write_bytes(pdf(["Memo\nThe memo."], "Memo"))
    write(tmp_path / "handbook.md", "# Handbook\nWelcome.")
    index = ResRankIndex(tiny, "revoke", path=":memory:")
    sync(index, tmp_path)
    assert seen(index, GUEST) == {"p1", "p2", "hr/memo.pdf", "handbook.md"}

    write(tmp_path / "hr" / ".access.json", json.dumps({"allowed_groups": ["hr"]}))
    write(tmp_path / "hr" / "plan.jsonl", lines({"id": "p1", "text": "Plan one."}) + '{"id": "p2", "te')
    (tmp_path / "hr" / "memo.pdf").write_bytes(b"%PDF-1.4 truncated")
    result, report = sync(index, tmp_path)
    assert {p.path for p in report.problems} == {"hr/plan.jsonl", "hr/memo.pdf"} and result.removed == 0
    assert seen(index, GUEST) == {"handbook.md"}
    assert seen(index, HR) == {"p1", "hr/memo.pdf", "handbook.md"}  # the list of hr/ applies to what is stored of them
    assert seen(index, EVERYTHING) == {"p1", "p2", "hr/memo.pdf", "handbook.md"}  # p2's line is damaged: kept, hidden

    write(tmp_path / "hr" / "plan.jsonl", lines({"id": "p1", "text": "Plan one."}, {"id": "p2", "text": "Plan two."}))
    (tmp_path / "hr" / "memo.pdf").write_bytes(pdf(["Memo\nThe memo."], "Memo"))
    sync(index, tmp_path)
    assert seen(index, HR) == {"p1", "p2", "hr/memo.pdf", "handbook.md"} and seen(index, GUEST) == {"handbook.md"}


def test_a_broken_access_list_is_named_and_hides_what_it_governs(tmp_path, tiny):
    """Issue 26 (4): a JSON typo in the root .access.json made --sync blame "no readable documents" and
    left hr/salary.md readable by guest."""
    docs = tmp_path / "docs"
    write(docs / ".access.json", json.dumps({"allowed_groups": ["*"]}))
    write(docs / "hr" / "salary.md", "# Salary\nBands for 2027.")
    write(docs / "handbook.md", "# Handbook\nWelcome.")
    tiny.save_pretrained(tmp_path / "model")
    common = ["--collection", "kb", "--path", str(tmp_path / "qdrant"), "--model", str(tmp_path / "model"), "--sync"]
    runner = CliRunner(env={"COLUMNS": "250", "RESRANK_CACHE_DIR": str(tmp_path / "cache")})
    assert runner.invoke(app, ["index", str(docs), *common]).exit_code == 0

    write(docs / ".access.json", '{"allowed_groups": ["staff"]')
    broken = runner.invoke(app, ["index", str(docs), *common])
    assert broken.exit_code == 0, broken.output
    assert ".access.json: access: access list unreadable" in broken.output and "hidden" in broken.output
    assert "no readable documents" not in broken.output and "0 removed" in broken.output
    with ResRankIndex(tiny, "kb", path=str(tmp_path / "qdrant")) as index:
        assert seen(index, GUEST) == seen(index, STAFF) == set()
        assert seen(index, EVERYTHING) == {"hr/salary.md", "handbook.md"}

    write(docs / ".access.json", json.dumps({"allowed_groups": ["staff"]}))
    assert runner.invoke(app, ["index", str(docs), *common]).exit_code == 0
    with ResRankIndex(tiny, "kb", path=str(tmp_path / "qdrant")) as index:
        assert seen(index, GUEST) == set() and seen(index, STAFF) == {"hr/salary.md", "handbook.md"}


def test_a_damaged_jsonl_line_keeps_every_document_of_the_file_and_names_the_line(tmp_path, tiny):
    """Issue 26 (9): one damaged line in faq.jsonl made --sync remove faq-1..3."""
    write(tmp_path / "faq.jsonl", lines(*({"id": f"faq-{i}", "text": f"Answer {i}.", "allowed_groups": ["*"]} for i in range(4))))
    write(tmp_path / "handbook.md", "# Handbook\nWelcome.")
    write(tmp_path / ".access.json", json.dumps({"allowed_groups": ["*"]}))
    index = ResRankIndex(tiny, "faq", path=":memory:")
    sync(index, tmp_path)
    damaged = lines(*({"id": f"faq-{i}", "text": f"Answer {i}.", "allowed_groups": ["*"]} for i in range(1, 4)))
    write(tmp_path / "faq.jsonl", '{"id": "faq-0", "text": "Answ\n' + damaged)
    result, report = sync(index, tmp_path)
    assert result.removed == 0
    (problem,) = report.problems
    assert problem.path == "faq.jsonl" and "faq.jsonl:1 is not valid JSON" in problem.message
    assert seen(index, GUEST) == {"faq-1", "faq-2", "faq-3", "handbook.md"}  # their lines still say who may read them
    assert seen(index, EVERYTHING) == {"faq-0", "faq-1", "faq-2", "faq-3", "handbook.md"}  # faq-0 is kept, hidden


def test_a_sidecar_left_behind_by_a_rename_keeps_the_renamed_file_hidden(tmp_path, tiny):
    """Issue 26 (12): review.md (managers only) renamed without its sidecar became public, with no warning."""
    write(tmp_path / ".access.json", json.dumps({"allowed_groups": ["*"]}))
    write(tmp_path / "reviews" / "review.md", "# Review\nPerformance notes.")
    write(tmp_path / "reviews" / "review.md.access.json", json.dumps({"allowed_groups": ["managers"]}))
    write(tmp_path / "handbook.md", "# Handbook\nWelcome.")
    index = ResRankIndex(tiny, "orphans", path=":memory:")
    sync(index, tmp_path)
    assert seen(index, GUEST) == {"handbook.md"} and "reviews/review.md" in seen(index, MANAGERS)

    (tmp_path / "reviews" / "review.md").rename(tmp_path / "reviews" / "review-final.md")
    _, report = sync(index, tmp_path)
    (problem,) = report.problems
    assert problem.path == "reviews/review.md.access.json" and "review.md is gone" in problem.message
    assert problem.allowed_groups == ["managers"]  # only those who could read review.md are told of it
    assert seen(index, GUEST) == {"handbook.md"} and "reviews/review-final.md" not in seen(index, MANAGERS)

    (tmp_path / "reviews" / "review.md.access.json").rename(tmp_path / "reviews" / "review-final.md.access.json")
    _, report = sync(index, tmp_path)
    assert report.problems == [] and seen(index, MANAGERS) == {"handbook.md", "reviews/review-final.md"}
    assert seen(index, GUEST) == {"handbook.md"}


def test_section_metadata_can_narrow_a_documents_list_but_never_widen_it(tiny):
    """Issue 26 (13): a section's {"allowed_groups": "*"} overrode the document's ["hr"] for its chunk."""
    document = Document.from_sections("report", [
        ("Quarterly summary for the board.", {"section": "Summary"}),
        ("Salary details of every manager.", {"section": "Salaries", "allowed_groups": "*"}),
        ("Notes for HR leads only.", {"section": "Leads", "allowed_groups": ["leads"]}),
    ], {"allowed_groups": ["hr", "leads"]})
    lists = [c.metadata["allowed_groups"] for c in chunk_document(document, 40, 5)]
    assert lists == [["hr", "leads"], ["hr", "leads"], ["leads"]]
    index = ResRankIndex(tiny, "sections", path=":memory:")
    index.index([document], chunk_size=40, overlap=5)
    assert index.search("salary details", k=5, principal=GUEST) == []
    assert [h.id for h in index.search("notes", k=5, top_n=5, principal=HR, rerank=False)] != []
    assert "report#2" not in {h.id for h in index.search("notes", k=5, top_n=5, principal=HR)}
    bad = Document.from_sections("bad", [("a", {}), ("b", {"allowed_groups": [3]})], {"allowed_groups": ["hr"]})
    with pytest.raises(ValueError, match="section"):
        chunk_document(bad, 40, 5)


def test_a_chunk_id_of_another_document_is_refused_not_overwritten(tmp_path, tiny):
    """Issue 26 (10): a JSONL row with id guide.md#1 silently overwrote chunk 1 of guide.md."""
    guide = " ".join(f"step{i}" for i in range(90))
    write(tmp_path / "guide.md", guide)
    index = ResRankIndex(tiny, "owners", path=":memory:")
    sync(index, tmp_path)
    stored = {h.id: h.text for h in index.scroll()}
    assert "guide.md#1" in stored
    write(tmp_path / "wiki.jsonl", lines({"id": "guide.md#1", "text": "An unrelated wiki page."}))
    with pytest.raises(ValueError, match="'guide.md#1' of document 'guide.md#1' is stored for document 'guide.md'"):
        index.index(read_documents(tmp_path / "wiki.jsonl"))
    with pytest.raises(ValueError, match="appears twice: it is also the id of a chunk of document 'guide.md'"):
        sync(index, tmp_path)
    assert {h.id: h.text for h in index.scroll()} == stored


def test_clashing_jsonl_ids_name_both_files_and_the_limit(tmp_path, tiny):
    """Issue 26 (11): two BEIR-style files, each with _id 0 and 1, failed with a bare "appears twice"."""
    for name in ("a.jsonl", "b.jsonl"):
        write(tmp_path / name, lines({"_id": "0", "title": name, "text": "zero"}, {"_id": "1", "title": name, "text": "one"}))
    index = ResRankIndex(tiny, "clash", path=":memory:")
    with pytest.raises(ValueError, match=r"document id '0' appears twice \(in a.jsonl, then in b.jsonl\).*own collection"):
        sync(index, tmp_path)


def test_a_short_two_page_pdf_is_never_one_chunk(tmp_path, tiny):
    """Issue 26 (16): a two-page PDF whose text fits one chunk was indexed whole, without pages."""
    (tmp_path / "two.pdf").write_bytes(pdf(["Trains\nBook trains.", "Hotels\nBook hotels."], "Travel"))
    (document,) = read_documents(tmp_path)
    for chunks in (chunk_document(document), chunk_document(document, None)):
        assert [(c.id, c.metadata["page"]) for c in chunks] == [("two.pdf#0", 1), ("two.pdf#1", 2)]
    index = ResRankIndex(tiny, "pages", path=":memory:")
    index.sync(tmp_path)  # no chunk_size: no word windows, yet one chunk per page
    assert sorted((h.id, h.metadata["page"]) for h in index.scroll()) == [("two.pdf#0", 1), ("two.pdf#1", 2)]
