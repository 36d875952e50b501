"""The harness, first stages, plots and the `eval` / `bench` commands on a small hand-written BEIR folder."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from resrank_rag.cli import app
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.evaluation import first_stage
from resrank_rag.evaluation.beir import load_beir
from resrank_rag.evaluation.harness import evaluate
from resrank_rag.evaluation.plots import latency_vs_k, quality_vs_latency
from resrank_rag.evaluation.rerankers import DenseReranker, ResRankReranker
from resrank_rag.testing import tiny_resrank

DOCS = {
    "d1": ("Photosynthesis", "Plants convert light into chemical energy using chlorophyll."),
    "d2": ("Volcanoes", "Magma rises through the crust and erupts as lava."),
    "d3": ("Jazz", "Improvisation and swing rhythms define jazz music."),
    "d4": ("Glaciers", "Slow rivers of ice carve valleys over thousands of years."),
    "d5": ("Bees", "Honey bees pollinate flowers and communicate by dancing."),
    "d6": ("Chess", "Openings, middlegames and endgames are the phases of chess."),
    "d7": ("Tides", "The moon's gravity pulls the oceans, causing tides."),
    "d8": ("", "Chlorophyll absorbs red and blue light most strongly."),
}
QUERIES = {"q1": "how do plants use chlorophyll and light", "q2": "what causes ocean tides", "q3": "jazz improvisation", "q9": "unjudged"}
QRELS = [("q1", "d1", 2), ("q1", "d8", 1), ("q1", "d5", 0), ("q2", "d7", 1), ("q3", "d3", 1)]
RUN = [("q1", "d5", 3.0), ("q1", "d1", 2.0), ("q1", "d8", 1.0), ("q2", "d7", 4.0), ("q2", "d4", 1.0), ("q3", "d6", 2.0), ("q3", "d3", 1.0)]


def write_beir(folder, with_run=True):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": t, "text": x}) + "\n" for d, (t, x) in DOCS.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS))
    if with_run:
        (folder / "runs").mkdir()
        ranks = {}
        lines = []
        for q, d, s in RUN:
            ranks[q] = ranks.get(q, 0) + 1
            lines.append(f"{q} Q0 {d} {ranks[q]} {s} bm25\n")
        (folder / "runs" / "bm25.test.trec").write_text("".join(lines))
    return folder


@pytest.fixture
def beir(tmp_path):
    return write_beir(tmp_path / "tiny-beir")


def test_load_beir_keeps_judged_queries_and_joins_title(beir):
    data = load_beir(beir, "test")
    assert set(data.queries) == {"q1", "q2", "q3"}
    assert data.corpus["d1"] == "Photosynthesis Plants convert light into chemical energy using chlorophyll."
    assert data.corpus["d8"].startswith("Chlorophyll")
    assert data.qrels["q1"] == {"d1": 2, "d8": 1, "d5": 0}
    assert [d for d, _ in data.shipped_run["q1"]] == ["d5", "d1", "d8"]
    assert list(data.limit_queries(2).queries) == ["q1", "q2"]
    with pytest.raises(FileNotFoundError, match="qrels/dev.tsv"):
        load_beir(beir, "dev")


def test_bm25_ranks_the_lexical_match_first(beir):
    data = load_beir(beir, "test")
    run = first_stage.bm25(data, k=5)
    assert run["q2"][0][0] == "d7" and run["q3"][0][0] == "d3"
    assert len(run["q1"]) <= 5


def test_harness_end_to_end_untrained_resrank_equals_dense(beir, tmp_path):
    model = tiny_resrank()
    cache = EmbeddingCache(model, tmp_path / "vectors.sqlite")
    data = load_beir(beir, "test")
    rerankers = [ResRankReranker(model), DenseReranker(model)]
    report = evaluate(model, data, "test", "hybrid", rerankers, depth=100, cache=cache, extra_first_stages=("bm25", "dense"))
    rows = {r.method: r for r in report.results}
    assert list(rows) == ["hybrid", "bm25", "dense", "hybrid + resrank", "hybrid + dense"]
    assert rows["hybrid + resrank"].metrics == pytest.approx(rows["hybrid + dense"].metrics)
    # the hybrid pool holds the whole tiny corpus, so dense reranking it is dense retrieval
    assert rows["hybrid + dense"].metrics == pytest.approx(rows["dense"].metrics)
    prompt = len(model._prompt_ids(QUERIES["q1"]))
    resrank = rows["hybrid + resrank"]
    assert resrank.encoded_passages_per_query == 0 and resrank.queries == 3
    assert resrank.lm_tokens_per_query >= prompt + 1
    assert rows["hybrid + dense"].lm_tokens_per_query == 0
    assert resrank.latency_ms_p95 >= resrank.latency_ms_mean * 0.5 > 0
    encoded = cache.encoded_count
    assert encoded == len(DOCS)
    evaluate(model, data, "test", "dense", rerankers, depth=3, cache=cache)
    assert cache.encoded_count == encoded  # a second run re-encodes nothing

    report.to_json(tmp_path / "out" / "report.json")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["results"][3]["method"] == "hybrid + resrank"
    png = quality_vs_latency(report, tmp_path / "out" / "q.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png = latency_vs_k([10, 20], {"a": [1.0, 2.0], "b": [3.0, None]}, tmp_path / "out" / "k.png")
    assert png.stat().st_size > 1000


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny ResRank saved with full weights; its config names saved encoder and causal-LM folders,
    so sentence-transformers and the fulltext baseline can load them offline."""
    from transformers import LlamaForCausalLM

    root = tmp_path_factory.mktemp("tiny")
    base = tiny_resrank()
    base.encoder.transformers_model.save_pretrained(root / "bert")  # a plain Hugging Face folder
    base.encoder.tokenizer.save_pretrained(root / "bert")
    LlamaForCausalLM(base.reranker.config).save_pretrained(root / "lm")
    base.reranker_tokenizer.save_pretrained(root / "lm")
    model = tiny_resrank(encoder=str(root / "bert"), reranker=str(root / "lm"))
    model.save_pretrained(root / "ckpt")
    return root / "ckpt"


def test_cli_eval_writes_table_json_and_plot(beir, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "results"
    result = CliRunner().invoke(app, ["eval", "--data", str(beir), "--model", str(tiny_checkpoint), "--output", str(out),
                                      "-r", "resrank", "-r", "dense", "-r", "pointwise", "--also", "bm25"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "shipped + resrank" in result.output
    saved = json.loads((out / "tiny-beir-test-shipped.json").read_text())
    methods = [r["method"] for r in saved["results"]]
    assert methods == ["shipped", "bm25", "shipped + resrank", "shipped + dense", "shipped + pointwise"]
    assert saved["results"][0]["metrics"]["RR@10"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert saved["results"][4]["lm_tokens_per_query"] > 0
    assert (out / "tiny-beir-test-shipped.png").exists()


def test_cli_eval_explains_a_bad_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "empty")])
    assert result.exit_code != 0
    assert "BEIR-layout" in result.output


def test_cli_bench_measures_latency_and_throughput(beir, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "--data", str(beir), "--model", str(tiny_checkpoint), "--k", "2", "--k", "4",
                                      "--repeats", "2", "--index-passages", "8", "--no-memory", "--output", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "bench.json").read_text())
    assert saved["ks"] == [2, 4] and saved["precisions"] == ["fp32", "bf16", "int8"]
    for precision in saved["precisions"]:  # every precision side by side, in the same run
        assert saved["runs"][f"resrank (stored vectors) [{precision}]"] == [2, 2]
        assert saved["runs"][f"fulltext-listwise [{precision}]"] == [1, 1]
    assert all(v > 0 for values in saved["median_ms"].values() for v in values)
    ms = saved["median_ms"]
    ratio = saved["ratios"]["fulltext-listwise [int8] / resrank (stored vectors) [int8]"]
    assert ratio[1] == pytest.approx(ms["fulltext-listwise [int8]"][1] / ms["resrank (stored vectors) [int8]"][1])
    speedup = saved["ratios"]["speed-up of resrank (stored vectors) [bf16] over fp32"]
    assert speedup[0] == pytest.approx(ms["resrank (stored vectors) [fp32]"][0] / ms["resrank (stored vectors) [bf16]"][0])
    assert set(saved["throughput"]) == {"resrank encode", "sentence-transformers encode"}
    assert saved["memory_mb"] == {}
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    output = " ".join(result.output.split())
    for precision in saved["precisions"]:  # the rows keep their "[precision]" (not eaten as rich markup)
        assert f"resrank (stored vectors) [{precision}]" in output
    assert saved["settings"]["auto"] in saved["precisions"]
    names = [bar["name"] for bar in saved["bars"]]  # no K=100 here: the done-when figures are at the largest K
    assert names[:2] == [f"speed-up vs fp32 with query encoding included, ResRank over 4 stored vectors [{p}]" for p in ("bf16", "int8")]
    assert saved["bars"][1]["value"] == pytest.approx(ms["resrank (stored vectors) [fp32]"][1] / ms["resrank (stored vectors) [int8]"][1])
    assert "speed-up vs fp32 with query encoding included, ResRank over 4 stored vectors [int8]:" in output
    assert "fulltext-listwise / ResRank over stored vectors at K=4, both [int8]:" in output


def test_done_when_reads_the_issue_15_bars_off_one_report():
    from resrank_rag.evaluation.bench import FULLTEXT, NO_WARM_START, STORED, TEXTS, BenchReport, done_when, label

    ms = {label(STORED, "fp32"): [50.0, 200.0], label(STORED, "int8"): [25.0, 75.0], label(TEXTS, "fp32"): [1.0, 1.0],
          label(TEXTS, "int8"): [1.0, 1.0], label(FULLTEXT, "fp32"): [900.0, 30_000.0], label(FULLTEXT, "int8"): [800.0, None]}
    memory = {label(STORED, "int8"): {"after load": 1, "after rerank": 2, "first call ms": 150.0, "steady ms": 70.0},
              f"{label(STORED, 'int8')}, {NO_WARM_START}": {"after load": 1, "after rerank": 2, "first call ms": 900.0, "steady ms": 70.0}}
    report = BenchReport([50, 100], ms, {}, memory_mb=memory, precisions=["fp32", "int8"], settings={"memory_k": 100})
    bars = {bar["name"]: bar for bar in done_when(report)}
    speed = bars["speed-up vs fp32 with query encoding included, ResRank over 100 stored vectors [int8]"]
    assert speed["value"] == pytest.approx(200 / 75) and speed["met"] is True
    assert bars["fulltext-listwise / ResRank over stored vectors at K=100, both [fp32]"]["value"] == pytest.approx(150.0)
    assert bars["fulltext-listwise / ResRank over stored vectors at K=100, both [int8]"]["met"] is None  # not timed at K=100
    first = bars[f"first call / steady call after loading, {label(STORED, 'int8')}, K=100"]
    assert first["value"] == pytest.approx(150 / 70) and first["met"] is False
    assert len(bars) == 4  # the no-warm-start probe is shown in the table, not held to the bar


def test_cli_bench_explains_a_bad_precision(beir, tiny_checkpoint):
    result = CliRunner().invoke(app, ["bench", "--data", str(beir), "--model", str(tiny_checkpoint), "--precision", "fp16", "--no-memory"])
    assert result.exit_code != 0 and "slow on CPUs" in result.output


@pytest.mark.slow  # fresh Python processes, each importing torch and transformers
def test_peak_memory_probes_one_fresh_process_per_method(tiny_checkpoint):
    from resrank_rag import ResRank
    from resrank_rag.evaluation.bench import METHODS, NO_WARM_START, label, peak_memory

    texts = [f"passage {i}" for i in range(4)]
    vectors = ResRank.from_pretrained(str(tiny_checkpoint)).encode(texts)
    memory = peak_memory(str(tiny_checkpoint), "a query", texts, vectors, precisions=["fp32", "int8"])
    expected = {label(m, p) for m in METHODS for p in ("fp32", "int8")}
    assert set(memory) == expected | {f"{label(METHODS[0], p)}, {NO_WARM_START}" for p in ("fp32", "int8")}
    for method, values in memory.items():
        assert values["after rerank"] >= values["after load"] > 50, method
        assert values["first call ms"] > 0, method


def test_harness_reports_the_lm_off_baseline_with_a_paired_test(beir, tmp_path):
    from resrank_rag.evaluation.rerankers import NoLMReranker
    from resrank_rag.testing import perturb_heads

    model = tiny_resrank(candidate_features=["rank", "cosine", "lexical"], score_head=True)
    perturb_heads(model)
    with torch.no_grad():
        model.rank_prior_weight.fill_(0.05)
        model.score_head.weight.normal_(0, 1.0)
    cache = EmbeddingCache(model, tmp_path / "vectors.sqlite")
    data = load_beir(beir, "test")
    rerankers = [ResRankReranker(model), ResRankReranker(model, "resrank-vectors", with_texts=False), NoLMReranker(model)]
    report = evaluate(model, data, "test", "shipped", rerankers, depth=100, cache=cache)
    rows = {r.method: r for r in report.results}
    assert rows["shipped + resrank-nolm"].lm_tokens_per_query == 0
    q1 = [data.corpus[d] for d in ("d5", "d1", "d8")]  # the shipped run's order for q1
    vectors = cache.encode(q1)
    expected = vectors @ model.encode_query(data.queries["q1"]) - 0.05 * np.log([1, 2, 3])
    got = NoLMReranker(model).rerank(data.queries["q1"], q1, vectors).scores
    np.testing.assert_allclose(got, expected, atol=1e-5)
    pairs = {(t["a"], t["b"]): t for t in report.significance}
    assert set(pairs) == {("resrank", "resrank-nolm"), ("resrank-vectors", "resrank-nolm"), ("resrank", "resrank-vectors")}
    for test in pairs.values():
        assert test["queries"] == 3 and 0.0 <= test["p_ttest"] <= 1.0 and 0.0 <= test["p_randomisation"] <= 1.0
        assert test["mean_difference"] == pytest.approx(
            rows[f"shipped + {test['a']}"].metrics["nDCG@10"] - rows[f"shipped + {test['b']}"].metrics["nDCG@10"])
    assert "significance" in json.loads(json.dumps(__import__("dataclasses").asdict(report)))


def test_cli_eval_reports_features_and_prior_and_says_which_path_runs(beir, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path / "cache"))
    config = json.loads((tiny_checkpoint / "resrank_config.json").read_text())
    features = tiny_resrank(encoder=config["encoder"], reranker=config["reranker"], linear_features=["rank", "cosine", "lexical"],
                            lm_branch=False)
    features.save_pretrained(tmp_path / "features")
    result = CliRunner().invoke(app, ["eval", "--data", str(beir), "--model", str(tmp_path / "features"), "--output", str(tmp_path / "out"),
                                      "-r", "resrank", "-r", "resrank-nolm", "-r", "features", "-r", "prior"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "tiny-beir-test-shipped.json").read_text())
    assert [r["method"] for r in saved["results"]][1:] == [f"shipped + {r}" for r in ("resrank", "resrank-nolm", "features", "prior")]
    assert {(t["a"], t["b"]) for t in saved["significance"]} >= {("resrank", "features"), ("features", "prior")}
    assert all(r["lm_tokens_per_query"] == 0 for r in saved["results"][1:])  # no LM ran
    assert "runs no LM by default" in " ".join(result.output.split())
    lm = CliRunner().invoke(app, ["eval", "--data", str(beir), "--model", str(tiny_checkpoint), "--output", str(tmp_path / "out2"),
                                  "-r", "resrank", "-r", "prior"], env={"COLUMNS": "200"})
    assert lm.exit_code == 0, lm.output
    assert "runs its reranker LM by default" in " ".join(lm.output.split())


def test_cli_bench_of_a_no_lm_checkpoint_times_stored_vectors_with_texts_against_the_15_ms_bar(beir, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("RESRANK_CACHE_DIR", str(tmp_path / "cache"))
    config = json.loads((tiny_checkpoint / "resrank_config.json").read_text())
    tiny_resrank(encoder=config["encoder"], reranker=config["reranker"], linear_features=["rank", "cosine", "lexical"],
                 lm_branch=False).save_pretrained(tmp_path / "features")
    result = CliRunner().invoke(app, ["bench", "--data", str(beir), "--model", str(tmp_path / "features"), "--k", "2", "--k", "4",
                                      "--repeats", "2", "--fulltext-repeats", "0", "--index-passages", "8", "--no-memory",
                                      "--output", str(tmp_path / "bench")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert saved["precisions"] == ["fp32"] and saved["settings"]["runs_lm"] is False and saved["settings"]["auto"] == "no LM"
    assert saved["runs"]["resrank (stored vectors + texts) [fp32]"] == [2, 2]
    bar = saved["bars"][0]
    assert bar["name"] == "no-LM rerank of 4 stored vectors + texts, query encoding included [fp32] (ms)"
    assert bar["value"] == saved["median_ms"]["resrank (stored vectors + texts) [fp32]"][1] and bar["bar"] == 15.0
    assert "bar <= 15 ms" in " ".join(result.output.split())
