import json

from typer.testing import CliRunner

from resrank_rag.cli import app
from resrank_rag.testing import tiny_resrank

runner = CliRunner()


def test_rerank_jsonl_output_is_ranked_with_float_scores(tmp_path):
    model = tiny_resrank()
    model.save_pretrained(tmp_path / "ckpt")
    lines = ['"plain string passage"', json.dumps({"text": "object passage", "id": "d2"}), "", json.dumps({"text": "third"})]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["rerank", "a query", "-c", str(tmp_path / "c.jsonl"), "--model", str(tmp_path / "ckpt"), "--format", "jsonl", "--top-n", "2",
                                 "--precision", "fp32"])  # compared with the fp32 model in memory
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    expected = model.rerank("a query", ["plain string passage", "object passage", "third"], top_n=2)
    assert [row["index"] for row in rows] == [r.index for r in expected]
    assert [row["rank"] for row in rows] == [1, 2]
    assert all(isinstance(row["score"], float) for row in rows)


def test_rerank_reports_bad_jsonl(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": 1}\n')
    result = runner.invoke(app, ["rerank", "q", "-c", str(tmp_path / "bad.jsonl")])
    assert result.exit_code != 0
    assert "needs a string field" in result.output
