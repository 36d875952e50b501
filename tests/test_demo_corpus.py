"""The demo's document readers: folders of .md/.txt/.html/.pdf, BEIR corpora, the shipped documents."""

import json

import pytest

from demos.docqa import corpus


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing ``text`` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_folder_reads_every_supported_format(tmp_path):
    (tmp_path / "guide.md").write_text("# Travel policy\n\nBook trains for trips under 500 km.")
    (tmp_path / "notes.txt").write_text("Expense reports are due monthly.")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "page.html").write_text(
        "<html><head><title>Office hours</title><style>p{color:red}</style></head>"
        "<body><script>var hidden = 1;</script><p>The office opens at 8.</p></body></html>"
    )
    (tmp_path / "refunds.pdf").write_bytes(minimal_pdf("Refunds take fourteen days."))
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    documents = {d.id: d for d in corpus.folder_documents(tmp_path)}
    assert set(documents) == {"guide.md", "notes.txt", "sub/page.html", "refunds.pdf"}
    assert documents["guide.md"].metadata["title"] == "Travel policy"
    page = documents["sub/page.html"]
    assert page.metadata["title"] == "Office hours"
    assert "The office opens at 8." in page.text and "hidden" not in page.text and "color" not in page.text
    assert "Refunds take fourteen days." in documents["refunds.pdf"].text


def test_missing_folder_names_the_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"\.pdf"):
        list(corpus.folder_documents(tmp_path / "nowhere"))


def test_long_documents_are_chunked_and_later_chunks_carry_the_title(tmp_path):
    (tmp_path / "long.md").write_text("# Leave policy\n\n" + " ".join(f"word{i}" for i in range(500)))
    chunks = corpus.chunks_of(corpus.folder_documents(tmp_path), prefix="hr/")
    assert len(chunks) >= 3
    assert [c.id for c in chunks] == [f"hr/long.md#{n}" for n in range(len(chunks))]
    assert chunks[0].text.startswith("# Leave policy")
    assert all(c.text.startswith("Leave policy\n") for c in chunks[1:])
    assert all(c.metadata["title"] == "Leave policy" for c in chunks)


def test_beir_corpus_honours_the_limit(tmp_path):
    rows = [{"_id": f"d{i}", "title": f"T{i}", "text": f"passage {i}"} for i in range(5)]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    documents = list(corpus.beir_documents(tmp_path, limit=3))
    assert [d.id for d in documents] == ["d0", "d1", "d2"]
    assert documents[1].text == "T1\npassage 1" and documents[1].metadata["title"] == "T1"
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        list(corpus.beir_documents(tmp_path / "empty"))


def test_shipped_documents_hold_every_python_topic_and_the_project_docs():
    chunks = corpus.shipped_chunks()
    topic_files = {p.name for p in corpus.SHIPPED_TOPICS.glob("*.md")}
    assert len(topic_files) >= 70
    sources = {c.metadata.get("source", c.id).removeprefix("python/") for c in chunks if c.id.startswith("python/")}
    assert sources == topic_files
    assert len({c.id for c in chunks}) == len(chunks)
    if (corpus.CHECKOUT / "README.md").exists():
        assert any(c.id.startswith("resrank-rag/README.md") for c in chunks)
