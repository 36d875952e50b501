"""PDF, DOCX and HTML ingestion: pages, headings, titles, no boilerplate, access lists, per-file problems."""

import json

import pytest
from typer.testing import CliRunner

from demos.sample_company import docx, make_company_folder, pdf
from resrank_rag.cli import app
from resrank_rag.documents import DocumentError, ReadReport, chunk_document, read_documents


@pytest.fixture
def company(tmp_path):
    return make_company_folder(tmp_path / "northwind")


def read(folder):
    report = ReadReport(echo=lambda _: None)
    return {d.id: d for d in read_documents(folder, report)}, report


def test_a_mixed_folder_reads_with_pages_sections_titles_and_per_file_problems(company):
    documents, report = read(company)
    assert set(documents) == {
        "handbook.md", "policies/travel-policy.pdf", "policies/leave-policy.docx", "intranet/it-support.html",
        "hr/salary-bands-2027.pdf", "hr/reorg-plan.docx", "broken/scan.pdf", "broken/empty.md",
    }
    problems = {p.path: (p.kind, p.skipped) for p in report.problems}
    assert problems == {
        "broken/corrupt.pdf": ("corrupt", True), "broken/locked.pdf": ("encrypted", True),
        "broken/corrupt.docx": ("corrupt", True), "broken/scan.pdf": ("scanned", False), "broken/empty.md": ("empty", False),
    }
    assert sorted(u.path for u in report.unread) == ["broken/corrupt.docx", "broken/corrupt.pdf", "broken/locked.pdf"]
    assert all(u.allowed_groups == ["*"] for u in report.unread)  # the list that governs them now
    summary = report.summary()
    assert "read 8 files into 8 documents; 3 skipped, 2 with warnings; 1 files of other types ignored" in summary
    assert "broken/locked.pdf: encrypted: password-protected" in summary and "ocrmypdf" in summary

    travel = chunk_document(documents["policies/travel-policy.pdf"], 30, 5)
    assert [c.metadata["page"] for c in travel] == [1, 2, 3]
    assert "Book a train for any trip under 500 km" in travel[1].text
    assert all(c.metadata["title"] == "Travel policy" and c.metadata["source"] == "policies/travel-policy.pdf" for c in travel)
    leave = chunk_document(documents["policies/leave-policy.docx"], 30, 5)
    assert [c.metadata.get("section") for c in leave] == ["Annual leave", "Annual leave > Part-time staff", "Parental leave"]
    assert leave[0].metadata["title"] == "Leave policy" and leave[1].text.startswith("Part-time staff")
    page = documents["intranet/it-support.html"]
    assert page.metadata["title"] == "IT support"
    assert [meta["section"] for _, meta in page.sections] == ["IT support", "Passwords", "Laptops"]
    for boilerplate in ("Cookie", "Login", "cafeteria menu", "track(", "color"):
        assert boilerplate not in page.text
    assert documents["handbook.md"].metadata["title"] == "Employee handbook"
    assert documents["broken/scan.pdf"].text == ""


def test_access_lists_from_sidecars_folders_jsonl_and_the_caller(company):
    (company / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "r1", "text": "row one", "allowed_groups": ["sales"]},
        {"id": "r2", "text": "row two", "metadata": {"allowed_groups": "legal"}},
        {"id": "r3", "text": "row three"},
    ]) + "\n")
    documents, _ = read(company)
    groups = {doc_id: d.metadata.get("allowed_groups") for doc_id, d in documents.items()}
    assert groups["handbook.md"] == ["*"]  # the folder's .access.json
    assert groups["hr/salary-bands-2027.pdf"] == ["hr"]  # hr/.access.json
    assert groups["hr/reorg-plan.docx"] == ["executives", "hr"]  # its own sidecar wins
    assert (groups["r1"], groups["r2"], groups["r3"]) == (["sales"], ["legal"], ["*"])
    (company / ".access.json").unlink()
    loose = {d.id: d.metadata.get("allowed_groups") for d in read_documents(company, ReadReport(), allowed_groups=["staff"])}
    assert loose["handbook.md"] == ["staff"] and loose["hr/salary-bands-2027.pdf"] == ["hr"]


def test_an_unreadable_access_list_hides_the_file_and_names_the_list(company):
    (company / "hr" / "reorg-plan.docx.access.json").write_text("{not json")
    documents, report = read(company)
    assert documents["hr/reorg-plan.docx"].metadata["allowed_groups"] == []  # no one may read it, not a wider list
    (problem,) = [p for p in report.problems if p.kind == "access"]
    assert problem.path == "hr/reorg-plan.docx.access.json" and not problem.skipped and "unreadable" in problem.message
    assert problem.allowed_groups == []
    with pytest.raises(DocumentError, match="reorg-plan.docx.access.json: access: access list unreadable"):
        list(read_documents(company / "hr"))  # without a report: a clear error


def test_without_a_report_a_bad_file_raises_a_clear_error(tmp_path):
    (tmp_path / "locked.pdf").write_bytes(pdf(["Locked\nx"], "Locked", user_password="pw"))
    with pytest.raises(DocumentError, match="locked.pdf: encrypted: password-protected"):
        list(read_documents(tmp_path))
    (tmp_path / "locked.pdf").write_bytes(docx("T", [("H", 1, "body")]))  # a .pdf that is really a zip
    with pytest.raises(DocumentError, match="corrupt: not a readable PDF"):
        list(read_documents(tmp_path / "locked.pdf"))


def test_cli_indexes_a_mixed_folder_reports_each_file_and_sync_keeps_unreadable_files(tmp_path, company, tiny):
    tiny.save_pretrained(tmp_path / "model")
    common = ["--collection", "kb", "--path", str(tmp_path / "qdrant"), "--model", str(tmp_path / "model")]
    runner = CliRunner(env={"COLUMNS": "250", "RESRANK_CACHE_DIR": str(tmp_path / "cache")})
    first = runner.invoke(app, ["index", str(company), *common, "--chunk-size", "40", "--overlap", "5", "--sync"])
    assert first.exit_code == 0, first.output
    assert "warning: broken/locked.pdf: encrypted" in first.output
    assert "3 skipped, 2 with warnings" in first.output and "8 documents in" in first.output

    from resrank_rag.index import Principal, ResRankIndex

    with ResRankIndex(tiny, "kb", path=str(tmp_path / "qdrant")) as store:
        hits = store.search("trains", k=50, top_n=50, principal=Principal.unrestricted_access())
        before = store.count(principal=Principal.unrestricted_access())
    pages = {(h.metadata["source"], h.metadata.get("page")) for h in hits}
    assert {("policies/travel-policy.pdf", n) for n in (1, 2, 3)} <= pages
    assert {h.metadata["source"] for h in hits}.isdisjoint({"broken/corrupt.pdf", "broken/locked.pdf"})

    (company / "policies" / "travel-policy.pdf").write_bytes(b"%PDF-1.4 truncated by a copy in progress")
    again = runner.invoke(app, ["index", str(company), *common, "--chunk-size", "40", "--overlap", "5", "--sync"])
    assert again.exit_code == 0, again.output
    assert "policies/travel-policy.pdf: corrupt" in again.output and "0 removed" in again.output
    with ResRankIndex(tiny, "kb", path=str(tmp_path / "qdrant")) as store:
        assert store.count(principal=Principal.unrestricted_access()) == before  # what was indexed of the unreadable file stays

    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "bad.pdf").write_bytes(b"junk")
    refused = runner.invoke(app, ["index", str(empty), *common])
    assert refused.exit_code != 0 and "no readable documents" in refused.output and "bad.pdf: corrupt" in refused.output
