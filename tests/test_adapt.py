"""`resrank adapt` on a tiny random model and an embedded Qdrant collection built here."""

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from resrank_rag import ResRank
from resrank_rag.adapt import MIN_QUERIES, adapt, read_queries
from resrank_rag.adapt.lists import StoredVectors, first_stage_lists, split
from resrank_rag.adapt.queries import LabelledQuery, resolve
from resrank_rag.adapt.synthetic import pseudo_queries
from resrank_rag.index import Document, ModelMismatchError, ResRankIndex
from resrank_rag.testing import tiny_resrank
from resrank_rag.training import StageConfig

# Tiny models: on a shared 2-core machine, thread hand-offs cost more than they save (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = ["apple orchard harvest", "volcano lava eruption", "chess opening theory", "river delta sediment",
          "violin bow concert", "glacier ice melt", "rocket fuel orbit", "bread yeast oven"]
DOCS = [Document(f"d{i}", f"{TOPICS[i % 8]} note {i}. The {TOPICS[(3 * i) % 8].split()[1]} part {i} is described here at length.",
                 {"title": f"all about {TOPICS[i % 8]} {i}"}) for i in range(40)]
QUERIES = [{"query": d.text, "relevant": [d.id]} for d in DOCS[:30]]  # each query is its passage's own text
PRIOR = StageConfig(name="prior", steps=12, train={"encoder": "frozen", "reranker": "frozen", "heads": "full"},
                    lr={"heads": 0.0, "rank_prior": 5e-2})
LORA = StageConfig(name="joint", steps=2, train={"encoder": "frozen", "reranker": "lora", "heads": "full"},
                   lr={"reranker": 1e-3, "heads": 1e-3, "rank_prior": 1e-3})
FAST = dict(depth=12, list_size=8, eval_every=4, save_every=4, patience=3, lists_per_step=2,
            ema_decay=None)  # a dozen steps: adapt's default average (about 50 steps) would hardly move


def make_base(folder, prior: float, backbones, **overrides):
    """A tiny checkpoint whose rank prior trusts (prior > 0) or distrusts (prior < 0) the first stage; its
    backbones are referenced, as the packaged model's are, so an adapted copy saves a LoRA adapter."""
    if not backbones.exists():
        tiny = tiny_resrank()
        tiny.encoder.save(str(backbones / "enc"))  # a SentenceTransformer folder, as ST models are published
        tiny.reranker.save_pretrained(backbones / "rr")
        tiny.reranker_tokenizer.save_pretrained(backbones / "rr")
    model = tiny_resrank(encoder=str(backbones / "enc"), reranker=str(backbones / "rr"),
                         encoder_weights="reference", reranker_weights="reference", **overrides)
    with torch.no_grad():
        model.rank_prior_weight.fill_(prior)
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A distrusting base model, the collection it indexed (embedded Qdrant folder) and a queries file."""
    tmp_path = tmp_path_factory.mktemp("adapt")
    base = make_base(tmp_path / "base", -0.5, tmp_path / "backbones")
    with ResRankIndex(ResRank.from_pretrained(base, precision="fp32"), "docs", path=str(tmp_path / "qdrant")) as index:
        index.index(DOCS)
    queries = write_queries(tmp_path / "queries.jsonl", QUERIES)
    return {"base": base, "path": str(tmp_path / "qdrant"), "queries": queries, "backbones": tmp_path / "backbones"}


def write_queries(path, rows):
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def record_encoded(monkeypatch) -> list[str]:
    """Every text any encoder runs on, from now on."""
    from sentence_transformers import SentenceTransformer

    seen = []
    preprocess = SentenceTransformer.preprocess

    def counting(self, inputs, *args, **kwargs):
        seen.extend(inputs)
        return preprocess(self, inputs, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "preprocess", counting)
    return seen


def test_adapt_fixes_a_bad_prior_writes_a_small_checkpoint_and_encodes_only_queries(world, monkeypatch, tmp_path):
    encoded = record_encoded(monkeypatch)
    out = tmp_path / "out"
    result = adapt("docs", world["queries"], out=out, base=world["base"], path=world["path"], stages=[PRIOR, LORA], **FAST)
    passages = {d.text for d in DOCS}
    assert encoded and set(encoded) <= {q["query"] for q in QUERIES}  # the queries, never another passage
    assert not set(encoded) & (passages - {q["query"] for q in QUERIES})
    rows = {r["system"]: r for r in result.rows}
    assert result.adapted and rows["adapted"]["nDCG@10"] > rows["base"]["nDCG@10"] + 0.2
    assert [t["b"] for t in result.tests] == ["LM off", "base"] and "p_randomisation" in result.tests[0]
    assert "adapted" in result.table() and "held-out part: 6 queries" in result.table()
    folder = out / "model"
    assert result.model == str(folder)
    assert (folder / "reranker" / "adapter_config.json").exists()  # LoRA adapter, not the backbone
    assert sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < 20e6
    recorded = json.loads((folder / "resrank_config.json").read_text())["extra"]["adapt"]
    assert recorded["base"] == world["base"] and recorded["collection"] == "docs" and recorded["points"] == 40
    assert recorded["queries_file"] == str(world["queries"]) and len(recorded["queries_sha256"]) == 64
    assert recorded["train_queries"] == 24 and recorded["heldout_queries"] == 6
    assert recorded["heldout"]["rows"][2]["system"] == "adapted"
    assert json.loads((out / "report.json").read_text())["adapted"] is True

    adapted = ResRank.from_pretrained(folder, precision="fp32")  # the index's model record accepts it
    assert float(adapted.rank_prior_weight.detach()) > -0.3
    encoded.clear()
    with ResRankIndex(adapted, "docs", path=world["path"]) as index:
        hits = index.search(DOCS[35].text, k=12, top_n=3)
    assert encoded == [DOCS[35].text] and hits[0].id == "d35"  # the query, nothing else

    again = adapt("docs", world["queries"], out=out, base=world["base"], path=world["path"], stages=[PRIOR, LORA], **FAST)
    assert again.steps == result.steps and again.rows == result.rows  # resumed: nothing trained twice
    with pytest.raises(ValueError, match="other data"):
        adapt("docs", world["queries"], out=out, base=world["base"], path=world["path"], stages=[PRIOR, LORA],
              **{**FAST, "list_size": 6})


def test_adapting_a_no_lm_base_turns_its_lm_on_and_the_out_folder_loads(world, tmp_path):
    base = make_base(tmp_path / "features", -0.5, world["backbones"], linear_features=["rank", "cosine", "lexical"],
                     lm_branch=False)
    assert ResRank.from_pretrained(base, precision="fp32").reranker is None  # the base runs no LM
    out = tmp_path / "out"
    result = adapt("docs", world["queries"], out=out, base=base, path=world["path"], stages=[PRIOR, LORA], **FAST)
    assert result.adapted and f"--model {out}" in result.message
    adapted = ResRank.from_pretrained(out, precision="fp32", warm_start=False)  # the folder the user named
    assert adapted.runs_lm and adapted.config.lm_branch and adapted.linear_scorer is not None
    assert json.loads((out / "model" / "resrank_config.json").read_text())["lm_branch"] is True


def test_refit_features_fits_the_feature_scorer_before_the_lm_and_needs_one(world, tmp_path):
    base = make_base(tmp_path / "features", -0.5, world["backbones"], linear_features=["rank", "cosine", "lexical"])
    assert not ResRank.from_pretrained(base, precision="fp32").linear_scorer.weight.any()  # zero-initialised
    out = tmp_path / "out"
    result = adapt("docs", world["queries"], out=out, base=base, path=world["path"], stages=[LORA], refit_features=True, **FAST)
    assert result.data["refit_features"] is True
    step0 = next(h for h in result.history if h.get("step") == 0 and "ndcg@10" in h)
    assert step0["ndcg@10"] > result.rows[1]["nDCG@10"]  # the refit alone already beats the base at step 0
    assert result.adapted
    assert ResRank.from_pretrained(out / "model", precision="fp32").linear_scorer.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="no feature scorer"):
        adapt("docs", world["queries"], out=tmp_path / "none", base=world["base"], path=world["path"], refit_features=True, **FAST)


def test_safety_keeps_the_base_when_adapting_does_not_help(world, tmp_path):
    base = make_base(tmp_path / "good", 0.5, world["backbones"])  # already ranks each query's own passage first
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "keep.txt").write_text("an earlier model")
    result = adapt("docs", world["queries"], out=out, base=base, path=world["path"], prior_steps=2, steps=2, **FAST)
    assert not result.adapted and result.model == base
    assert "not better than the base" in result.message and "left as it was" in result.message
    assert (out / "model" / "keep.txt").read_text() == "an earlier model"


def test_lists_come_in_first_stage_order_with_stored_vectors(world):
    model = ResRank.from_pretrained(world["base"], precision="fp32")
    queries = [LabelledQuery(d.text, {d.id: 1}) for d in DOCS[:3]]
    vectors = StoredVectors()
    with ResRankIndex(model, "docs", path=world["path"]) as index:
        for first_stage in ("dense", "hybrid"):
            lists = first_stage_lists(index, model, queries, 10, first_stage, vectors)
            for query, item in zip(queries, lists):
                hits, stored = index.retrieve_with_vectors(query.query, k=10, first_stage=first_stage)
                assert item.ids == [h.id for h in hits]
                torch.testing.assert_close(torch.from_numpy(item.vectors), torch.from_numpy(stored))
                assert item.labels == [int(h.id in query.relevant) for h in hits]
                assert item.training_list(4).doc_ids == item.ids[:4]
    torch.testing.assert_close(torch.from_numpy(vectors.encode([DOCS[0].text])), torch.from_numpy(lists[0].vectors[:1]))
    with pytest.raises(KeyError, match="no stored vector"):
        vectors.encode(["a text the collection never gave"])


def test_held_out_split_is_disjoint_stable_and_keeps_repeats_together():
    queries = [LabelledQuery(f"question {i}", {"d": 1}) for i in range(50)] + [LabelledQuery("question 7", {"e": 1})]
    train, held = split(queries, 0.2, 5)
    assert {q.query for q in train}.isdisjoint({q.query for q in held})
    assert len({q.query for q in held}) == 10 and len(train) + len(held) == 51
    assert [q.query for q in held].count("question 7") in (0, 2)
    shuffled = random.Random(3).sample(queries, len(queries)) + [LabelledQuery("question 99", {"d": 1})]
    assert {q.query for q in split(shuffled, 0.2, 5)[1]} - {q.query for q in held} <= {"question 99"}
    assert len(split(queries[:20], 0.01, 5)[1]) == 5  # the minimum


def test_bad_query_files_give_clear_errors(world, tmp_path):
    tmp, common = tmp_path, dict(out=tmp_path / "out", base=world["base"], path=world["path"])
    cases = {
        "empty": ([], "holds no queries"),
        "json": (["{not json"], "not valid JSON"),
        "noquery": ([{"relevant": ["d1"]}], 'non-empty "query"'),
        "both": ([{"query": "q", "relevant": ["d1"], "positive": "x"}], "not both"),
        "grades": ([{"query": "q", "relevant": ["d1", "d2"], "grades": [1]}], "one grade per relevant id"),
        "few": (QUERIES[:12], f"at least {MIN_QUERIES}"),
        "unknown": (QUERIES[:25] + [{"query": "where", "relevant": ["nope"]}], r"\['nope'\] is neither a chunk id"),
        "positive": (QUERIES[:25] + [{"query": "where", "positive": "text found in no chunk at all"}], "holds the \"positive\""),
    }
    for name, (rows, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            adapt("docs", write_queries(tmp / f"{name}.jsonl", rows), **common)
    with pytest.raises(FileNotFoundError, match="not found"):
        adapt("docs", tmp / "missing.jsonl", **common)
    other = tiny_resrank(seed=1)
    other.save_pretrained(tmp / "other")
    with pytest.raises(ModelMismatchError, match="encoder the collection was indexed with"):
        adapt("docs", world["queries"], **{**common, "base": str(tmp / "other")})
    with pytest.raises(ValueError, match="empty or missing"):
        adapt("nothing-here", world["queries"], **common)


def test_positive_texts_are_matched_to_their_chunks(world, tmp_path):
    model = ResRank.from_pretrained(world["base"], precision="fp32")
    rows = [{"query": "q1", "positive": "volcano lava eruption note 1"}, {"query": "q2", "positive": DOCS[2].text.upper()}]
    queries = read_queries(write_queries(tmp_path / "p.jsonl", rows))
    with ResRankIndex(model, "docs", path=world["path"]) as index:
        resolved = resolve(index, queries)
    assert resolved[0].relevant == {"d1": 1} and resolved[1].relevant == {"d2": 1}


def test_synthetic_queries_come_from_the_collection(world):
    model = ResRank.from_pretrained(world["base"], precision="fp32")
    with ResRankIndex(model, "docs", path=world["path"]) as index:
        made = pseudo_queries(index, 12, ("title", "sentence", "keyphrases", "questions"), seed=0,
                              write_questions=lambda texts: [f"what does {t.split()[0]} say?" for t in texts])
    assert len(made) == 12
    by_kind = {q.where.split()[1]: q for q in made}
    assert set(by_kind) == {"title", "sentence", "keyphrases", "questions"}
    title = by_kind["title"]
    assert title.query.startswith("all about") and list(title.relevant) == [d.id for d in DOCS if d.metadata["title"] == title.query]
    chunk = next(d for d in DOCS if d.id in by_kind["sentence"].relevant)
    assert by_kind["sentence"].query in chunk.text
    assert by_kind["questions"].query.startswith("what does")


def test_synthetic_mode_measures_on_the_labelled_held_out_part(world, tmp_path):
    result = adapt("docs", world["queries"], out=tmp_path / "syn", base=world["base"], path=world["path"],
                   synthetic=True, synthetic_count=30, stages=[PRIOR], **FAST)
    assert result.data["synthetic"] == ["title", "sentence", "keyphrases"] and result.data["heldout_queries"] == 6
    assert result.data["train_queries"] >= 10


def test_cli_defaults_are_the_library_defaults():
    import inspect

    from resrank_rag.commands.adapt import adapt as command

    library, cli = inspect.signature(adapt).parameters, inspect.signature(command).parameters
    for name in ("prior_steps", "steps", "patience", "ema_decay", "refit_features", "list_size", "depth", "holdout", "seed"):
        assert cli[name].default == library[name].default, name


def test_cli_adapts_end_to_end_and_search_uses_the_result(world, tmp_path):
    from resrank_rag.cli import app

    out = tmp_path / "cli"
    args = ["adapt", "--collection", "docs", "--queries", str(world["queries"]), "--base", world["base"],
            "--path", world["path"], "--out", str(out), "--prior-steps", "4", "--steps", "2", "--eval-every", "2",
            "--list-size", "8", "--depth", "12", "--ema-decay", "0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out part" in result.output and "adapted vs base" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["ema_decay"] == 0.5  # the run published the moving average of its weights
    model = report["model"]
    assert model == (str(out / "model") if report["adapted"] else world["base"])
    found = CliRunner().invoke(app, ["search", DOCS[3].text, "--collection", "docs", "--path", world["path"],
                                     "--model", model, "--k", "12", "--precision", "fp32"])
    assert found.exit_code == 0, found.output
    bad = CliRunner().invoke(app, ["adapt", "--collection", "docs", "--out", str(out)])
    assert bad.exit_code != 0 and "--synthetic" in bad.output
    bad = CliRunner().invoke(app, args[:-2] + ["--ema-decay", "1.5", "--no-resume"])
    assert bad.exit_code != 0 and "ema_decay must be between 0 and 1" in bad.output
