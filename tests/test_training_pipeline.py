"""Training lists, the two-stage trainer, resume, LoRA save/load and the curve PNG, on a tiny BEIR folder."""

import dataclasses
import json
import random

import pytest
import torch
from typer.testing import CliRunner

from resrank_rag import ResRank
from resrank_rag.testing import tiny_resrank
from resrank_rag.training import DatasetSpec, StageConfig, TrainConfig, Trainer
from resrank_rag.training.data import load_mix

# Tiny models: on a shared 2-core machine, thread hand-offs cost more than they save (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = [
    "cats purr sleep whiskers kitten", "rockets launch orbit fuel engine", "bread flour yeast oven bake",
    "rivers flow delta water valley", "violin strings bow music concert", "glaciers ice melt mountain snow",
]


def write_beir(folder, split="train", run=False):
    """6 topics x 4 passages; query t judges passage 0 grade 2, passage 1 grade 1, passage 2 grade 0."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as handle:
        for t, words in enumerate(TOPICS):
            for i in range(4):
                handle.write(json.dumps({"_id": f"d{t}-{i}", "title": "", "text": f"{words} note {i} {words.split()[i]}"}) + "\n")
    with open(folder / "queries.jsonl", "w") as handle:
        for t, words in enumerate(TOPICS):
            handle.write(json.dumps({"_id": f"q{t}", "text": f"what about {words.split()[0]} {words.split()[1]}"}) + "\n")
    with open(folder / "qrels" / f"{split}.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for t in range(len(TOPICS)):
            handle.write(f"q{t}\td{t}-0\t2\nq{t}\td{t}-1\t1\nq{t}\td{t}-2\t0\n")
    if run:
        (folder / "runs").mkdir(exist_ok=True)
        with open(folder / "runs" / f"bm25.{split}.trec", "w") as handle:
            for t in range(len(TOPICS)):
                docs = [f"d{(t + 1) % 6}-3"] + [f"d{t}-{i}" for i in range(4)] + [f"d{(t + 2) % 6}-0"]
                handle.writelines(f"q{t} Q0 {d} {r} {10 - r} bm25\n" for r, d in enumerate(docs, 1))
    return folder


@pytest.fixture
def beir(tmp_path):
    write_beir(tmp_path / "toy", "train")
    write_beir(tmp_path / "toy", "test", run=True)
    return tmp_path


def make_config(root, stages, **overrides):
    settings = dict(
        output_dir=str(root / "out"), model="unused", list_size=8, lists_per_step=2, eval_every=0, save_every=1,
        datasets=[DatasetSpec(path="toy", split="train", negatives=["judged", "bm25", "random"])],
        dev=DatasetSpec(path="toy", split="test", negatives=["run"]), embedding_cache=":memory:", stages=stages,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


HEADS_ONLY = StageConfig(name="align", steps=3, train={"encoder": "frozen", "reranker": "frozen", "heads": "full"},
                         lr={"heads": 1e-2})
JOINT = StageConfig(name="joint", steps=3, train={"encoder": "full", "reranker": "lora", "heads": "full"},
                    lr={"encoder": 1e-3, "reranker": 1e-3, "heads": 1e-2}, distill_weight=0.1, margin_weight=0.1)
LORA_JOINT = StageConfig(name="joint", steps=3, train={"encoder": "lora", "reranker": "lora", "heads": "full"},
                         lr={"encoder": 1e-2, "reranker": 1e-2, "heads": 1e-2})


# ---------------------------------------------------------------- lists
def test_lists_keep_grades_judged_negatives_and_size(beir):
    mix = load_mix([DatasetSpec(path="toy", negatives=["judged", "bm25", "random"])], list_size=8, base_dir=beir)
    builder = mix.builders[0]
    item = builder.build("q2", random.Random(0))
    labels = dict(zip(item.doc_ids, item.labels))
    assert len(item.doc_ids) == len(set(item.doc_ids)) == 8
    assert labels["d2-0"] == 2 and labels["d2-1"] == 1  # graded positives, grades kept
    assert labels["d2-2"] == 0  # the judged (score-0) negative is always in the list
    assert sum(1 for label in item.labels if label > 0) == 2
    assert "d2-3" in labels  # BM25 finds the unjudged same-topic passage as a hard negative
    assert item.texts == [builder.dataset.corpus[d] for d in item.doc_ids]


def test_positives_capped_and_query_ranges_disjoint(beir):
    first = load_mix([DatasetSpec(path="toy", query_range=(0.0, 0.5))], 8, max_positives=1, base_dir=beir).builders[0]
    second = load_mix([DatasetSpec(path="toy", query_range=(0.5, 1.0))], 8, base_dir=beir).builders[0]
    assert set(first.query_ids).isdisjoint(second.query_ids) and len(first.query_ids) + len(second.query_ids) == 6
    item = first.build(first.query_ids[0], random.Random(1))
    assert item.labels.count(2) == 1 and item.labels.count(1) == 0  # the best grade wins the single slot


def test_mix_sampling_is_a_function_of_step_and_honours_weights(beir):
    write_beir(beir / "other", "train")
    specs = [DatasetSpec(path="toy", weight=9.0), DatasetSpec(path="other", weight=1.0)]
    mix = load_mix(specs, 6, base_dir=beir)
    assert [i.doc_ids for i in mix.sample(7, 3)] == [i.doc_ids for i in mix.sample(7, 3)]
    names = [item.dataset for step in range(60) for item in mix.sample(step, 2)]
    assert names.count("toy") > 3 * names.count("other") > 0


def test_first_stage_lists_keep_the_run_order_and_skip_queries_it_misses(beir):
    spec = DatasetSpec(path="toy", split="test", negatives=["run"], list_order="first_stage")
    builder = load_mix([spec], list_size=3, base_dir=beir).builders[0]
    item = builder.build("q4", random.Random(0))
    assert item.doc_ids == ["d5-3", "d4-0", "d4-1"]  # the run's top 3, as ranked, no positive forced in
    assert item.labels == [0, 2, 1]
    assert builder.build("q4", random.Random(1)) == item  # no shuffling
    with pytest.raises(ValueError, match="first-stage top list"):  # every run's first hit is off-topic
        load_mix([spec], list_size=1, base_dir=beir)


def test_rank_prior_learns_to_trust_a_good_first_stage(beir):
    """A run that ranks the grade-2 passage first and the grade-1 second: the prior weight grows."""
    with open(beir / "toy" / "runs" / "bm25.test.trec", "w") as handle:
        for t in range(len(TOPICS)):
            docs = [f"d{t}-{i}" for i in range(4)] + [f"d{(t + 1) % 6}-{i}" for i in range(2)]
            handle.writelines(f"q{t} Q0 {d} {r} {10 - r} bm25\n" for r, d in enumerate(docs, 1))
    spec = DatasetSpec(path="toy", split="test", negatives=["run"], list_order="first_stage")
    stage = StageConfig(name="prior", steps=10, train={"encoder": "frozen", "reranker": "frozen", "heads": "full"},
                        lr={"heads": 0.0, "rank_prior": 5e-2})
    model = tiny_resrank()
    trainer = Trainer(make_config(beir, [stage], datasets=[spec], list_size=6, save_every=0, dev=None), model, base_dir=beir)
    trainer.train()
    assert float(model.rank_prior_weight) > 0.1
    assert float(model.passage_head.weight.abs().max()) == 0.0  # lr 0: the heads stayed at zero


def test_several_dev_sets_report_each_and_pick_best_by_their_mean(beir):
    devs = [DatasetSpec(path="toy", split="test", negatives=["run"], query_range=(0.0, 0.5)),
            DatasetSpec(path="toy", split="test", negatives=["run"], query_range=(0.5, 1.0))]
    trainer = Trainer(make_config(beir, [HEADS_ONLY], dev=devs, save_every=0), tiny_resrank(), base_dir=beir)
    record = trainer.evaluate()
    first, second = record["toy-test[0:0.5]/ndcg@10"], record["toy-test[0.5:1]/ndcg@10"]
    assert record["ndcg@10"] == pytest.approx((first + second) / 2)
    assert trainer.best == record["ndcg@10"] and (beir / "out" / "best").is_dir()


def test_config_rejects_mistakes_with_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="listwise_loss"):
        StageConfig(name="x", steps=1, listwise_loss="lambdamart")
    with pytest.raises(ValueError, match="negative sources"):
        DatasetSpec(path="x", negatives=["dpr"])
    with pytest.raises(ValueError, match="ranking source"):
        DatasetSpec(path="x", negatives=["judged"], list_order="first_stage")
    with pytest.raises(ValueError, match="unknown lr keys"):
        StageConfig(name="x", steps=1, lr={"head": 1e-4})
    path = tmp_path / "bad.yaml"
    path.write_text("output_dir: x\ndatasets: [{path: a}]\nstages: [{name: s, steps: 1}]\nlearning_rate: 3\n")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_yaml(path)


# ---------------------------------------------------------------- trainer
def test_training_steps_reduce_the_loss(beir):
    stage = StageConfig(name="heads", steps=8, train={"encoder": "frozen", "reranker": "lora", "heads": "full"},
                        lr={"reranker": 1e-2, "heads": 1e-2}, listwise_loss="listnet")
    trainer = Trainer(make_config(beir, [stage], lists_per_step=4, save_every=0, dev=None), tiny_resrank(), base_dir=beir)
    lists = trainer.mix.sample(0, 4)
    with torch.no_grad():
        before = trainer.loss(lists, stage)[1]["loss"]
    trainer.train()
    with torch.no_grad():
        after = trainer.loss(lists, stage)[1]["loss"]
    assert after < 0.8 * before


def test_a_linear_schedule_decays_the_rates_to_zero_after_warm_up(beir):
    with pytest.raises(ValueError, match="schedule"):
        StageConfig(name="x", steps=1, schedule="cosine")
    stages = [dataclasses.replace(HEADS_ONLY, steps=2),
              StageConfig(name="decay", steps=5, train={"encoder": "frozen", "reranker": "lora", "heads": "full"},
                          warmup_steps=2, schedule="linear")]
    trainer = Trainer(make_config(beir, stages, lists_per_step=2, save_every=0, dev=None), tiny_resrank(), base_dir=beir)
    trainer.train()
    factors = [round(h["rate_factor"], 4) for h in trainer.history if "rate_factor" in h]
    assert factors == [1.0, 1.0] + [0.5, 1.0, 1.0, 0.6667, 0.3333]  # constant prior stage, then warm-up and decay


def test_weight_averaging_evaluates_and_exports_the_moving_average_and_resumes(beir, tmp_path):
    with pytest.raises(ValueError, match="ema_decay"):
        make_config(beir, [HEADS_ONLY], ema_decay=1.0)
    stages, decay = [HEADS_ONLY, dataclasses.replace(LORA_JOINT, steps=2)], 0.6

    def config(name, **options):
        return make_config(beir, stages, output_dir=str(tmp_path / name), save_every=1, **options)

    plain = Trainer(config("plain", dev=None), tiny_resrank(), base_dir=beir)  # averaging never changes the steps taken
    expected = {name: p.detach().clone() for name, p in plain._trained_parameters().items()}
    for step in range(1, 6):
        plain.train(stop_after=step if step < 5 else None)
        weights = plain._trained_parameters()
        expected = {name: decay * value + (1 - decay) * weights[name].detach() for name, value in expected.items()}
    averaging = Trainer(config("ema", ema_decay=decay), tiny_resrank(), base_dir=beir)
    averaging.train(stop_after=2)  # killed, then resumed: the average survives in the state file
    averaging = Trainer(config("ema", ema_decay=decay), tiny_resrank(), base_dir=beir)
    averaging.train()
    live = averaging._saved_parameters()
    assert any("lora_" in name for name in live)
    for name, value in plain._saved_parameters().items():
        torch.testing.assert_close(live[name], value, rtol=0, atol=1e-6, msg=name)
    for name, value in expected.items():
        torch.testing.assert_close(averaging._average[name], value, rtol=0, atol=1e-6, msg=name)
    assert not torch.equal(averaging._average["passage_head.weight"], live["passage_head.weight"])
    with averaging.averaged() as model:
        torch.testing.assert_close(model.passage_head.weight.detach(), expected["passage_head.weight"], rtol=0, atol=1e-6)
    torch.testing.assert_close(averaging.model.passage_head.weight.detach(), live["passage_head.weight"], rtol=0, atol=0)
    exported = ResRank.from_pretrained(tmp_path / "ema" / "model", precision="fp32", merge_lora=False)
    torch.testing.assert_close(exported.passage_head.weight.detach(), expected["passage_head.weight"], rtol=0, atol=1e-6)


def _grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(sum(g.abs().sum() for g in grads)) if grads else None


def test_gradients_reach_the_encoder_only_when_it_trains(beir):
    joint = StageConfig(name="joint", steps=1, train={"encoder": "full", "reranker": "full", "heads": "full"},
                        infonce_weight=0.0)  # listwise alone: the encoder gets its gradient through the scores
    trainer = Trainer(make_config(beir, [HEADS_ONLY, joint]), tiny_resrank(), base_dir=beir)
    with torch.no_grad():  # non-zero residual heads, so the reranker path carries gradient too
        for head in (trainer.model.passage_head, trainer.model.query_head):
            head.weight.normal_(0, 0.1)
    lists = trainer.mix.sample(0, 2)
    trainer._trainable(HEADS_ONLY)
    trainer.loss(lists, HEADS_ONLY)[0].backward()
    assert _grad_norm(trainer.model.encoder) is None and _grad_norm(trainer.model.reranker) is None
    assert _grad_norm(trainer.model.passage_head) > 0
    trainer.model.zero_grad(set_to_none=True)
    trainer._trainable(joint)
    trainer.loss(lists, joint)[0].backward()
    assert _grad_norm(trainer.model.encoder) > 0 and _grad_norm(trainer.model.reranker) > 0


def test_kill_and_resume_matches_an_uninterrupted_run(beir, tmp_path):
    stages = [HEADS_ONLY, JOINT]
    def config(name):
        return make_config(beir, stages, output_dir=str(tmp_path / name), dev=None)

    straight = Trainer(config("a"), tiny_resrank(), base_dir=beir)
    straight.train()
    interrupted = Trainer(config("b"), tiny_resrank(), base_dir=beir)
    interrupted.train(stop_after=4)  # mid stage 2: the state file is all that survives
    assert interrupted.step == 4
    resumed = Trainer(config("b"), tiny_resrank(), base_dir=beir)
    resumed.train()
    assert resumed.step == straight.step == 6
    expected, got = straight._saved_parameters(), resumed._saved_parameters()
    assert set(expected) == set(got) and any("lora_" in name for name in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)
    assert [h["loss"] for h in resumed.history if "loss" in h] == pytest.approx([h["loss"] for h in straight.history if "loss" in h])


def test_a_state_saved_before_the_encoder_was_a_sentence_transformer_resumes(beir, tmp_path):
    """Its encoder parameters were named encoder.model.*; they now sit at encoder.0.model.*."""
    from resrank_rag.training.trainer import STATE_FILE

    config = make_config(beir, [JOINT], output_dir=str(tmp_path / "run"), dev=None)
    first = Trainer(config, tiny_resrank(), base_dir=beir)
    first.train(stop_after=1)
    path = tmp_path / "run" / STATE_FILE
    state = torch.load(path, weights_only=False)
    state["parameters"] = {name.replace("encoder.0.model.", "encoder.model.", 1): value
                           for name, value in state["parameters"].items()}
    assert any(name.startswith("encoder.model.") for name in state["parameters"])
    torch.save(state, path)
    resumed = Trainer(config, tiny_resrank(), base_dir=beir)
    resumed._load_state()
    expected, got = first._saved_parameters(), resumed._saved_parameters()
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_lora_trained_model_round_trips_and_writes_curves(beir, tmp_path):
    base = tiny_resrank()
    base.encoder.transformers_model.save_pretrained(tmp_path / "enc")
    base.encoder.tokenizer.save_pretrained(tmp_path / "enc")
    base.reranker.save_pretrained(tmp_path / "rr")
    base.reranker_tokenizer.save_pretrained(tmp_path / "rr")
    model = tiny_resrank(encoder=str(tmp_path / "enc"), reranker=str(tmp_path / "rr"),
                         encoder_weights="reference", reranker_weights="reference")
    config = make_config(beir, [HEADS_ONLY, LORA_JOINT], eval_every=2, save_every=0, output_dir=str(tmp_path / "run"))
    trainer = Trainer(config, model, base_dir=beir)
    history = trainer.train()
    out = tmp_path / "run"
    assert (out / "model" / "reranker" / "adapter_config.json").exists()
    assert (out / "model" / "encoder" / "adapter_config.json").exists()
    assert not (out / "model" / "reranker" / "model.safetensors").exists()  # an adapter, not the backbone
    assert not list((out / "model" / "reranker").glob("tokenizer*"))  # loading takes the base's tokenizer
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [h["step"] for h in history if "ndcg@10" in h] == [0, 2, 3, 4, 6]  # every 2 steps and each stage end
    loaded = ResRank.from_pretrained(out / "model", precision="fp32")  # compared with the fp32 trainer model
    query, texts = "what about cats purr", [json.loads(line)["text"] for line in open(beir / "toy" / "corpus.jsonl")][:8]
    trainer.model.eval()
    expected = [(r.index, r.score) for r in trainer.model.rerank(query, texts)]
    got = [(r.index, r.score) for r in loaded.rerank(query, texts)]
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert loaded.config.extra["training"]["step"] == 6


def test_cli_trains_from_a_yaml_recipe(beir, tmp_path):
    from resrank_rag.cli import app

    tiny_resrank().save_pretrained(tmp_path / "start")
    recipe = tmp_path / "train.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / "cli-run"}
model: {tmp_path / "start"}
list_size: 8
lists_per_step: 2
eval_every: 2
embedding_cache: ":memory:"
datasets:
  - {{path: toy, split: train, negatives: [judged, bm25]}}
dev: {{path: toy, split: test}}
stages:
  - {{name: align, steps: 2, train: {{heads: full}}, lr: {{heads: 0.001}}}}
""")
    result = CliRunner().invoke(app, ["train", "--config", str(recipe), "--base-dir", str(beir)])
    assert result.exit_code == 0, result.output
    assert "dev nDCG@10" in result.output
    assert (tmp_path / "cli-run" / "model" / "heads.safetensors").exists()
    assert (tmp_path / "cli-run" / "best" / "resrank_config.json").exists()


def test_nolm_anchor_distils_toward_the_lm_off_scores_and_bf16_autocast_trains(beir):
    stage = StageConfig(name="joint", steps=2, train={"encoder": "frozen", "reranker": "lora", "heads": "full"},
                        lr={"reranker": 1e-2, "heads": 1e-2}, listwise_weight=0.0, distill_weight=1.0, anchor="nolm")
    trainer = Trainer(make_config(beir, [stage], dev=None, save_every=0, autocast="bf16"),
                      tiny_resrank(candidate_features=["rank", "cosine", "lexical"], score_head=True), base_dir=beir)
    with torch.no_grad():
        trainer.model.rank_prior_weight.fill_(0.3)
    lists = trainer.mix.sample(0, 2)
    loss, parts = trainer.loss(lists, stage)
    assert parts["distill"] == pytest.approx(0.0, abs=1e-3)  # untrained model == its LM-off scores, bf16 noise aside
    dense_stage = StageConfig(name="d", steps=1, listwise_weight=0.0, distill_weight=1.0, anchor="dense")
    assert trainer.loss(lists, dense_stage)[1]["distill"] > 0.01  # the prior moved it away from plain cosine
    trainer.train()
    assert trainer.step == 2
    with pytest.raises(ValueError, match="anchor"):
        StageConfig(name="x", steps=1, anchor="teacher")
    with pytest.raises(ValueError, match="autocast"):
        make_config(beir, [stage], autocast="fp8")


def test_architecture_overrides_build_the_parts_only_from_scratch(beir, monkeypatch):
    built = []

    def fake_from_config(config):
        built.append(config)
        return tiny_resrank(**{k: getattr(config, k) for k in ("candidate_features", "adaptive_prior", "score_head", "reranker_layers")})

    monkeypatch.setattr(ResRank, "from_config", staticmethod(fake_from_config))
    overrides = {"candidate_features": ["rank"], "adaptive_prior": True, "reranker_layers": 1}
    trainer = Trainer(make_config(beir, [HEADS_ONLY], dev=None, model="resrank-minilm-smollm2", from_untrained=True,
                                  model_overrides=overrides), base_dir=beir)
    assert built[0].candidate_features == ["rank"] and built[0].adaptive_prior and built[0].reranker_layers == 1
    assert trainer.model.prior_head is not None and len(trainer.model.reranker.layers) == 1
    with pytest.raises(ValueError, match="from_untrained"):
        Trainer(make_config(beir, [HEADS_ONLY], dev=None, model_overrides={"score_head": True}), tiny_resrank(), base_dir=beir)


def test_overrides_reach_a_given_model_and_shaping_fields_are_refused_on_it(beir):
    config = make_config(beir, [HEADS_ONLY], dev=None, from_untrained=True, model_overrides={"residual_weight": 0.5})
    assert Trainer(config, tiny_resrank(), base_dir=beir).model.config.residual_weight == 0.5
    shaping = make_config(beir, [HEADS_ONLY], dev=None, from_untrained=True, model_overrides={"score_head": True})
    with pytest.raises(ValueError, match="score_head"):
        Trainer(shaping, tiny_resrank(), base_dir=beir)


# ---------------------------------------------------------------- alignment stage and hybrid lists
ALIGN = StageConfig(name="align", steps=20, train={"encoder": "frozen", "reranker": "lora", "heads": "full"},
                    lr={"reranker": 3e-2, "heads": 3e-2, "rank_prior": 0.0}, listwise_weight=0.0,
                    alignment_weight=1.0, alignment_tokens=6, alignment_passages=4)


def test_alignment_stage_teaches_the_lm_to_read_the_projected_vector_without_lists(beir, monkeypatch):
    trainer = Trainer(make_config(beir, [ALIGN], eval_every=5, save_every=0), tiny_resrank(), base_dir=beir)
    monkeypatch.setattr(trainer.mix, "sample", lambda *a, **k: pytest.fail("an alignment-only stage needs no lists"))
    with torch.no_grad():  # a trained LM's token embeddings are far from the random init's 0.02 scale
        trainer.model.reranker.get_input_embeddings().weight.mul_(50)
    projector_before = [p.detach().clone() for p in trainer.model.projector.parameters()]
    with torch.no_grad():
        before = trainer.loss([], ALIGN)[1]["alignment"]
    trainer.train()
    trainer.step = 0  # the same passages as before training
    with torch.no_grad():
        after = trainer.loss([], ALIGN)[1]["alignment"]
    assert after < 0.8 * before
    assert any(not torch.equal(p, b) for p, b in zip(trainer.model.projector.parameters(), projector_before))  # it learned
    assert float(trainer.model.passage_head.weight.abs().max()) == 0.0  # ranking heads untouched: step 0 of ranking == LM off
    assert float(trainer.model.rank_prior_weight) == 0.0
    assert {h["stage"] for h in trainer.history if "stage" in h} == {"align"}
    assert [h["step"] for h in trainer.history if "ndcg@10" in h] == [0]  # dev selects ranking steps only


def test_alignment_passages_come_from_the_training_corpora_and_the_step(beir):
    from resrank_rag.training.alignment import PassageSampler

    corpus = load_mix([DatasetSpec(path="toy")], 6, base_dir=beir).builders[0].dataset.corpus
    sampler = PassageSampler([corpus, corpus], seed=3)
    assert len(sampler.texts) == len(set(corpus.values()))  # duplicates across corpora collapse
    assert sampler.sample(5, 8) == sampler.sample(5, 8) != sampler.sample(6, 8)
    assert set(sampler.sample(5, 8)) <= set(corpus.values())
    with pytest.raises(ValueError, match="corpora"):
        PassageSampler([{}])
    with pytest.raises(ValueError, match="alignment"):
        StageConfig(name="x", steps=1, alignment_weight=-1.0)


def test_hybrid_first_stage_lists_are_the_rrf_of_bm25_and_encoder_order(beir):
    from resrank_rag.evaluation.first_stage import reciprocal_rank_fusion

    model = tiny_resrank()
    vectors = (lambda texts: model.encode(texts), model.encode_queries)
    spec = DatasetSpec(path="toy", negatives=["hybrid"], list_order="first_stage")
    builder = load_mix([spec], 6, base_dir=beir, encoder_vectors=vectors).builders[0]
    query = builder.dataset.queries["q2"]
    runs = [{"q2": [(d, 0.0) for d in miner.top(query, 12)]} for miner in (builder.bm25, builder.encoder)]
    expected = [d for d, _ in reciprocal_rank_fusion(runs, 12)["q2"]][:6]
    assert builder.build("q2", random.Random(0)).doc_ids == expected
    assert expected != [d for d, _ in runs[0]["q2"]][:6] or expected != [d for d, _ in runs[1]["q2"]][:6]
    with pytest.raises(ValueError, match="hybrid"):
        load_mix([spec], 6, base_dir=beir)
