"""Reading and chunking documents, and the `resrank index` / `resrank search` commands."""

import json

import pytest
from typer.testing import CliRunner

from resrank_rag.cli import app
from resrank_rag.documents import chunk_document, chunk_text, read_documents
from resrank_rag.index import Document


def test_chunk_text_windows_overlap_and_cover_every_word():
    words = [f"w{i}" for i in range(50)]
    chunks = chunk_text(" ".join(words), chunk_size=20, overlap=5)
    assert [c.split() for c in chunks] == [words[0:20], words[15:35], words[30:50]]
    assert chunk_text("  short  text\n", chunk_size=20, overlap=5) == ["short  text"]
    assert chunk_text("   ", 20, 5) == []
    with pytest.raises(ValueError, match="overlap < chunk_size"):
        chunk_text("a b", chunk_size=5, overlap=5)


def test_chunk_document_ids_and_metadata():
    long = Document("manual", " ".join(f"w{i}" for i in range(30)), {"lang": "en"})
    chunks = chunk_document(long, chunk_size=12, overlap=2)
    assert [c.id for c in chunks] == ["manual#0", "manual#1", "manual#2"]
    assert chunks[1].metadata == {"lang": "en", "source": "manual", "chunk": 1}
    short = Document("note", "fits in one chunk", {"lang": "en"})
    assert chunk_document(short, chunk_size=12, overlap=2) == [short]


def write_corpus(folder):
    (folder / "guides").mkdir(parents=True)
    (folder / "guides" / "volcano.md").write_text("# Volcanoes\nLava erupts from volcanoes when magma rises.")
    (folder / "chess.txt").write_text(" ".join(["chess opening theory"] * 30))  # 90 words
    rows = [
        {"_id": "beir-1", "title": "Apples", "text": "Orchards harvest apples in autumn."},
        {"id": "plain-2", "text": "Rivers carry sediment to deltas.", "metadata": {"lang": "en"}},
    ]
    (folder / "extra.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "ignored.csv").write_text("a,b\n")


def test_read_documents_handles_txt_md_and_both_jsonl_forms(tmp_path):
    write_corpus(tmp_path)
    documents = {d.id: d for d in read_documents(tmp_path)}
    assert set(documents) == {"guides/volcano.md", "chess.txt", "beir-1", "plain-2"}
    assert documents["beir-1"].text == "Apples Orchards harvest apples in autumn."
    assert documents["beir-1"].metadata == {"title": "Apples", "path": "extra.jsonl"}  # the file it was read from
    assert documents["plain-2"].metadata == {"lang": "en", "path": "extra.jsonl"}
    assert documents["guides/volcano.md"].metadata == {"path": "guides/volcano.md", "source": "guides/volcano.md", "title": "Volcanoes"}
    chunks = [c for d in read_documents(tmp_path) for c in chunk_document(d, chunk_size=40, overlap=10)]
    assert [c.id for c in chunks if c.id.startswith("chess")] == ["chess.txt#0", "chess.txt#1", "chess.txt#2"]


def test_read_documents_reports_bad_jsonl_lines(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "no id"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1 needs"):
        list(read_documents(bad))


def test_index_then_search_from_the_command_line(tmp_path, tiny):
    write_corpus(tmp_path / "docs")
    tiny.save_pretrained(tmp_path / "model")
    common = ["--collection", "kb", "--path", str(tmp_path / "qdrant"), "--model", str(tmp_path / "model")]
    # COLUMNS: wide enough that rich folds no id; the embedding cache goes to tmp_path, not the user cache
    runner = CliRunner(env={"COLUMNS": "250", "RESRANK_CACHE_DIR": str(tmp_path / "cache")})
    first = runner.invoke(app, ["index", str(tmp_path / "docs"), *common, "--chunk-size", "40", "--overlap", "10"])
    assert first.exit_code == 0, first.output
    assert "6 chunks encoded or updated" in first.output and "holds 6 points" in first.output
    again = runner.invoke(app, ["index", str(tmp_path / "docs"), *common, "--chunk-size", "40", "--overlap", "10"])
    assert again.exit_code == 0, again.output
    assert "0 chunks encoded or updated" in again.output and "holds 6 points" in again.output
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.sqlite"))) == 1

    found = runner.invoke(app, ["search", "lava volcano", *common, "--k", "6", "--top-n", "6", "--hybrid"])
    assert found.exit_code == 0, found.output
    for doc_id in ("guides/volcano.md", "chess.txt#0", "beir-1", "plain-2"):
        assert doc_id in found.output
    plain = runner.invoke(app, ["search", "lava", *common, "--top-n", "2", "--no-rerank"])
    assert plain.exit_code == 0, plain.output
    assert "│ 2 " in plain.output and "│ 3 " not in plain.output

    missing = runner.invoke(app, ["search", "lava", "--collection", "nope", *common[2:]])
    assert missing.exit_code != 0 and "empty or missing" in missing.output


def test_index_and_sync_follow_edited_split_shrunk_and_removed_files(tmp_path, tiny):
    from resrank_rag import ResRank
    from resrank_rag.index import ResRankIndex

    docs = tmp_path / "docs"
    write_corpus(docs)
    tiny.save_pretrained(tmp_path / "model")
    common = ["--collection", "kb", "--path", str(tmp_path / "qdrant"), "--model", str(tmp_path / "model"),
              "--chunk-size", "40", "--overlap", "10", "--no-cache"]
    runner = CliRunner(env={"RESRANK_CACHE_DIR": str(tmp_path / "cache")})
    assert runner.invoke(app, ["index", str(docs), *common]).exit_code == 0

    (docs / "chess.txt").write_text("chess is short now")  # three chunks shrink to one
    (docs / "guides" / "volcano.md").write_text(" ".join(["magma"] * 100))  # one chunk grows to three
    (docs / "extra.jsonl").unlink()  # beir-1 and plain-2 are gone
    plain = runner.invoke(app, ["index", str(docs), *common])
    assert plain.exit_code == 0, plain.output

    def chunk_ids():
        with ResRankIndex(ResRank.from_pretrained(tmp_path / "model"), "kb", path=str(tmp_path / "qdrant")) as index:
            return sorted(p.payload["chunk_id"] for p in index.client.scroll("kb", limit=100, with_payload=True)[0])

    volcano = [f"guides/volcano.md#{n}" for n in range(3)]
    assert chunk_ids() == sorted(["beir-1", "chess.txt", "plain-2", *volcano])  # index never removes documents
    synced = runner.invoke(app, ["index", str(docs), *common, "--sync"])
    assert synced.exit_code == 0, synced.output
    assert "2 documents in 4 chunks, 0 encoded or updated, 2 removed" in synced.output
    assert chunk_ids() == sorted(["chess.txt", *volcano])

    (docs / "chess.txt").unlink()
    (docs / "guides" / "volcano.md").unlink()
    empty = runner.invoke(app, ["index", str(docs), *common, "--sync"])
    assert empty.exit_code != 0 and "holds no" in empty.output
