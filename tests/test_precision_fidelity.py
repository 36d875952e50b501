"""The precision fidelity measures (resrank_rag/evaluation/fidelity.py) and benchmarks/precision_fidelity.py on toy data."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from resrank_rag.evaluation.fidelity import compare_to_fp32, ranking_tau, same_top
from resrank_rag.testing import perturb_heads, tiny_resrank

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "precision_fidelity.py"


def test_ranking_tau_and_same_top():
    ranked = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    assert ranking_tau(ranked, [("c", 0.3), ("a", 0.9), ("b", 0.5)]) == pytest.approx(1.0)
    assert ranking_tau(ranked, [("c", 3.0), ("b", 2.0), ("a", 1.0)]) == pytest.approx(-1.0)
    assert ranking_tau(ranked, [("a", 3.0), ("c", 2.0), ("b", 1.0)]) == pytest.approx(1 / 3)
    assert same_top(ranked, [("a", 9.0), ("b", 8.0), ("c", 7.0)], n=2)
    assert not same_top(ranked, [("b", 9.0), ("a", 8.0), ("c", 7.0)], n=2)
    with pytest.raises(ValueError, match="same candidates"):
        ranking_tau(ranked, [("a", 1.0), ("b", 0.5), ("z", 0.1)])


def test_compare_to_fp32_reports_shift_tau_and_top10_per_precision():
    qrels = {"q1": {"a": 1}, "q2": {"x": 1}}
    fp32 = {"q1": [("a", 3.0), ("b", 2.0), ("c", 1.0)], "q2": [("x", 2.0), ("y", 1.0)]}
    swapped = {"q1": [("b", 3.0), ("a", 2.0), ("c", 1.0)], "q2": [("x", 2.0), ("y", 1.0)]}
    rows = {r.precision: r for r in compare_to_fp32(qrels, {"fp32": fp32, "int8": swapped}, {"int8": 5.0})}
    assert rows["fp32"].ndcg10_shift == 0 and rows["fp32"].kendall_tau == 1 and rows["fp32"].same_top10 == 1
    assert rows["int8"].ndcg10_shift < -0.1 and not rows["int8"].keeps_ranking
    assert rows["int8"].kendall_tau == pytest.approx((1 / 3 + 1) / 2)
    assert rows["int8"].same_top10 == 0.5 and rows["int8"].latency_ms_mean == 5.0
    with pytest.raises(ValueError, match="fp32"):
        compare_to_fp32(qrels, {"int8": swapped})


def test_the_fidelity_script_prints_and_writes_a_table(tmp_path, monkeypatch, capsys):
    data = tmp_path / "toy"
    (data / "qrels").mkdir(parents=True)
    docs = {f"d{i}": f"passage {i} about {'cats' if i % 3 == 0 else 'dogs'} and more" for i in range(12)}
    (data / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (data / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "cats"}) + "\n" + json.dumps({"_id": "q2", "text": "dogs"}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq1\td3\t1\nq2\td1\t1\n")
    model = tiny_resrank()
    perturb_heads(model)
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "fidelity.json"
    argv = [str(SCRIPT), "--model", str(tmp_path / "ckpt"), "--data", str(data), "--first-stage", "bm25", "--depth", "10",
            "--embedding-cache", ":memory:", "--output", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr().out
    assert "Kendall tau" in printed and "same top 10" in printed and "warning" not in printed
    report = json.loads(out.read_text())
    rows = next(iter(report["datasets"].values()))
    assert [r["precision"] for r in rows] == ["fp32", "bf16", "int8"]
    assert rows[0]["ndcg10_shift"] == 0 and rows[0]["kendall_tau"] == pytest.approx(1)
    assert all(0 <= r["same_top10"] <= 1 and -1 <= r["kendall_tau"] <= 1 for r in rows)
    assert set(report["largest_ndcg10_shift"]) == {"bf16", "int8"}
