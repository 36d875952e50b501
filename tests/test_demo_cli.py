"""`resrank demo`: the command's options, its errors, and one real offline answer with --once."""

import shutil
from pathlib import Path

from typer.testing import CliRunner

from resrank_rag.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_demo_is_registered_with_its_flags():
    result = runner.invoke(app, ["demo", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--once", "--port", "--no-browser", "--docs", "--data", "--llm", "--chat", "--terminal", "--no-generate",
                 "--feedback-db"):
        assert flag in result.output


def test_conflicting_corpora_and_bad_first_stage_are_refused(tmp_path):
    result = runner.invoke(app, ["demo", "--docs", str(tmp_path), "--data", str(tmp_path), "--once", "q"])
    assert result.exit_code != 0 and "not both" in result.output
    result = runner.invoke(app, ["demo", "--first-stage", "bm25", "--once", "q"])
    assert result.exit_code != 0 and "hybrid" in result.output


def test_once_answers_offline_from_the_real_model(tmp_path):
    shutil.copy(REPO / "demos" / "docs_corpus" / "python_topics" / "while.md", tmp_path)
    shutil.copy(REPO / "demos" / "docs_corpus" / "python_topics" / "pass.md", tmp_path)
    args = ["demo", "--once", "What does the pass statement do?", "--docs", str(tmp_path),
            "--index-path", ":memory:", "--k", "3", "--context", "2", "--max-new-tokens", "8"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "retrieval order vs ResRank order" in result.output
    assert "timings: retrieve" in result.output and "generate" in result.output
    assert "pass.md" in result.output  # the pass statement's page is among the passages shown
    assert result.output.index("from the documents") < result.output.index("Generated answer")
    assert "null operation" in result.output  # the extractive answer: pass.md's own sentence


def test_a_busy_port_is_refused_before_loading_anything():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["demo", "--port", str(port), "--no-browser"], terminal_width=200)
    assert result.exit_code != 0 and "busy" in result.output
