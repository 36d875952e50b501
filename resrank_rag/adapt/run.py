"""``adapt``: tune the reranker side of a ResRank model to one collection, its encoder (and so every stored vector) unchanged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from resrank_rag.adapt.feedback import FeedbackWeights, feedback_queries
from resrank_rag.adapt.lists import FixedLists, HeldOut, StoredVectors, first_stage_lists, split
from resrank_rag.adapt.queries import LabelledQuery, read_queries, resolve
from resrank_rag.adapt.synthetic import DEFAULT_KINDS, QuestionWriter, pseudo_queries, shown_chunks
from resrank_rag.model import DEFAULT_MODEL

MIN_QUERIES = 20
"""Fewest distinct labelled (or pseudo-) queries adapt accepts."""
MIN_HELDOUT = 5
MIN_TRAIN_LISTS = 10
"""Fewest training queries whose first-stage list holds a relevant chunk."""
DATA_FILE = "adapt_data.json"
BASE_RUNS_FILE = "base_heldout.json"


HEADS_LR = 3e-5
"""The heads' rate in the LoRA stage. The LM branch's output heads start at zero and read 576 layer-normed
hidden units, so Adam at the probe's 3e-4 let them outweigh the unit-length encoder vectors within a few
dozen steps: on SciFact feedback the held-out nDCG@10 fell from 0.852 to 0.770 by step 140, where 3e-5 rose
to 0.875 (docs/feedback.md)."""

EMA_DECAY = 0.98
"""adapt evaluates and publishes the moving average of the trained weights (about the last 50 steps). On SciFact
feedback it narrowed four seeds' test gains from +1.5 ... +3.4 to +2.1 ... +2.7 (docs/feedback.md)."""


def default_stages(prior_steps: int = 40, steps: int = 300) -> list:
    """The recipe of the SciFact probe (../shared/probes/scifact-adapt.yaml), heads at ``HEADS_LR``: the rank
    prior alone, then LoRA on the reranker LM plus the heads; RankNet, no distillation. The encoder never trains."""
    from resrank_rag.training import StageConfig

    return [
        StageConfig(name="prior", steps=prior_steps, train={"encoder": "frozen", "reranker": "frozen", "heads": "full"},
                    lr={"heads": 0.0, "rank_prior": 2e-3}),
        StageConfig(name="joint", steps=steps, train={"encoder": "frozen", "reranker": "lora", "heads": "full"},
                    lr={"reranker": 2e-4, "heads": HEADS_LR, "rank_prior": 1e-3}, warmup_steps=min(50, steps)),
    ]


@dataclass
class AdaptResult:
    """What ``adapt`` did: the model to use, the held-out table, and whether the adapted model won."""

    model: str
    """The folder of the adapted model, or the base model when it was kept."""
    adapted: bool
    base: str
    out: str
    rows: list[dict]
    """``{"system", "nDCG@10", "RR@10"}`` for the LM-off model, the base and the adapted model, on the held-out part."""
    tests: list[dict]
    """``metrics.paired_test`` of adapted against LM off and against base (nDCG@10 per query)."""
    data: dict
    steps: int
    best_step: int
    wall_s: float
    message: str
    history: list[dict] = field(default_factory=list, repr=False)

    def table(self) -> str:
        lines = [f"held-out part: {self.data['heldout_queries']} queries, {self.data['first_stage']} top-{self.data['depth']}",
                 f"{'system':<10} {'nDCG@10':>8} {'MRR@10':>8}"]
        lines += [f"{r['system']:<10} {r['nDCG@10']:>8.4f} {r['RR@10']:>8.4f}" for r in self.rows]
        lines += [f"{t['a']} vs {t['b']}: nDCG@10 {t['mean_difference']:+.4f} ({t['wins']} better, {t['losses']} worse); "
                  f"paired t-test p = {t['p_ttest']:.4f}, randomisation p = {t['p_randomisation']:.4f}" for t in self.tests]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "history"}


def adapt(
    collection,
    queries: str | Path | None = None,
    *,
    out: str | Path,
    base: str = DEFAULT_MODEL,
    path: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    first_stage: str = "dense",
    feedback: str | Path | None = None,
    feedback_weights: FeedbackWeights = FeedbackWeights(),
    synthetic: bool = False,
    synthetic_kinds=DEFAULT_KINDS,
    synthetic_count: int = 800,
    synthetic_from: str | Path | None = None,
    write_questions: QuestionWriter | None = None,
    holdout: float = 0.2,
    depth: int = 100,
    list_size: int = 30,
    prior_steps: int = 40,
    steps: int = 300,
    lists_per_step: int = 4,
    eval_every: int = 50,
    patience: int = 3,
    save_every: int = 25,
    seed: int = 0,
    ema_decay: float | None = EMA_DECAY,
    refit_features: bool | None = None,
    resume: bool = True,
    stages: list | None = None,
) -> AdaptResult:
    """Adapt ``base`` to ``collection`` (a name, opened at ``path``/``url``, or an open ``ResRankIndex``).

    Lists come from the collection's own first stage (``dense`` or ``hybrid``), in that order, with the
    stored vectors: nothing is re-encoded. ``queries`` is a JSONL file (``queries.FORMAT``); ``feedback`` a
    feedback store or its JSONL export (``resrank_rag.feedback``: 👍 positives, 👎 and skipped passages
    negatives, weighted by ``feedback_weights``), alone or beside ``queries``; with
    ``synthetic`` the training queries are pseudo-queries from the chunks (held out: the labelled
    queries' held-out part when ``queries`` is given too); ``synthetic_from`` (a feedback store or export, rated
    or not) makes them only from the chunks its logged questions showed first (``synthetic.shown_chunks``), and
    implies ``synthetic``. Training (``default_stages`` unless
    ``stages``; ``ema_decay``: evaluate and publish the moving average of the trained weights,
    ``TrainConfig.ema_decay``, None for the weights as they are; ``refit_features``: first refit the base's no-LM
    feature scorer on the training lists, as ``resrank fit-features`` does, so the LM learns on top of it; None:
    whenever the base has one) stops early when ``patience`` held-out evaluations bring no gain; the best model is
    written to ``out/model`` only when it beats the base on the held-out part. ``out/run`` holds the
    resumable training state: the same call again continues where it stopped.
    """
    from resrank_rag import ResRank
    from resrank_rag.training.config import check_ema_decay

    started = time.monotonic()
    synthetic = synthetic or synthetic_from is not None
    if queries is None and feedback is None and not synthetic:
        raise ValueError("give a queries file (JSONL), a feedback file, or synthetic=True (pseudo-queries from the collection)")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be a share between 0 and 1, got {holdout}")
    check_ema_decay(ema_decay)  # before anything is written to out
    labelled = read_queries(queries) if queries is not None else None
    if labelled is not None and feedback is None:
        _check_count(len({q.query.strip() for q in labelled}), f"{queries} holds")
    out = Path(out)
    model = ResRank.from_pretrained(base, precision="fp32", merge_lora=False, warm_start=False, lm=True)
    if refit_features is None:
        refit_features = model.linear_scorer is not None
    elif refit_features and model.linear_scorer is None:
        raise ValueError(f"{base} has no feature scorer (linear_features) to refit; adapt without refit_features (--keep-features)")
    index = collection if not isinstance(collection, str) else _open(model, collection, path, url, api_key, base)
    try:
        _check_collection(index, model, base)
        rated = None
        if feedback is not None:
            rated = feedback_queries(feedback, index, feedback_weights)
            labelled = (labelled or []) + rated.queries
            _check_count(len({q.query.strip() for q in labelled}), f"{feedback} and {queries}" if queries else
                         f"{feedback} (lists with a 👍 on a chunk still in the collection) holds")
        targets = None if synthetic_from is None else shown_chunks(synthetic_from)
        train_q, held_q = _queries(index, labelled, synthetic, synthetic_kinds, synthetic_count, write_questions,
                                   holdout, seed, targets)
        vectors = StoredVectors()
        train_lists = [item for item in first_stage_lists(index, model, train_q, list_size, first_stage, vectors)
                       if any(item.labels)]
        if len(train_lists) < MIN_TRAIN_LISTS:
            raise ValueError(
                f"only {len(train_lists)} of {len(train_q)} training queries have a relevant chunk in the first-stage "
                f"top-{list_size}; adapt needs at least {MIN_TRAIN_LISTS}. Check that the ids belong to collection "
                f"{index.collection!r}, or raise list_size (--list-size)."
            )
        held = HeldOut(first_stage_lists(index, model, held_q, depth, first_stage, vectors))
        data = {
            "base": str(base), "collection": index.collection, "points": index.count(principal=_admin()),
            "first_stage": first_stage, "queries_file": None if queries is None else str(queries),
            "queries_sha256": None if queries is None else hashlib.sha256(Path(queries).read_bytes()).hexdigest(),
            "feedback_file": None if feedback is None else str(feedback),
            "feedback": None if rated is None else {**rated.summary(), "weights": dataclasses.asdict(feedback_weights)},
            "synthetic": list(synthetic_kinds) if synthetic else None, "train_queries": len(train_lists),
            "heldout_queries": len(held.lists), "holdout": holdout, "list_size": list_size, "depth": depth, "seed": seed,
        }
        if synthetic_from is not None:  # absent otherwise, so runs saved before the option still resume
            data["synthetic_from"] = {"file": str(synthetic_from), "chunks": len(targets)}
        if ema_decay is not None:  # likewise
            data["ema_decay"] = ema_decay
        if refit_features:  # likewise
            data["refit_features"] = True
    finally:
        if isinstance(collection, str):
            index.close()
    options = dict(stages=stages, prior_steps=prior_steps, steps=steps, list_size=list_size, lists_per_step=lists_per_step,
                   eval_every=eval_every, save_every=save_every, seed=seed, patience=patience, ema_decay=ema_decay,
                   refit_features=refit_features)
    return _train_and_publish(model, base, out, data, train_lists, held, vectors, resume, started, options)


def _train_and_publish(model, base, out: Path, data, train_lists, held: HeldOut, vectors, resume, started, options) -> AdaptResult:
    from resrank_rag import ResRank
    from resrank_rag.training import DatasetSpec, TrainConfig, Trainer
    from resrank_rag.training.data import TrainingMix
    from resrank_rag.training.trainer import STATE_FILE

    run = out / "run"
    resuming = resume and (run / STATE_FILE).exists()
    if resuming and _read_json(run / DATA_FILE) != data:
        raise ValueError(f"{run} holds a run on other data (collection, queries or settings changed); "
                         "use a new out folder, or resume=False (--no-resume) to start over there")
    run.mkdir(parents=True, exist_ok=True)
    base_runs = _read_json(run / BASE_RUNS_FILE) if resuming else None
    if base_runs is None:
        base_runs = held.runs(model)
        _write_json(run / BASE_RUNS_FILE, base_runs)
    _write_json(run / DATA_FILE, data)
    spec = DatasetSpec(path=f"qdrant:{data['collection']}", split="adapt", negatives=["run"], list_order="first_stage")
    config = TrainConfig(
        output_dir=str(run), model=str(base), datasets=[spec], stages=options["stages"] or default_stages(
            options["prior_steps"], options["steps"]),
        list_size=options["list_size"], lists_per_step=options["lists_per_step"], eval_every=options["eval_every"],
        save_every=options["save_every"], seed=options["seed"], embedding_cache=":memory:", ema_decay=options["ema_decay"],
    )
    if config.lora_parts() & {"encoder"} or any(s.train["encoder"] != "frozen" for s in config.stages):
        raise ValueError("adapt trains the reranker side only: every stage needs train.encoder 'frozen'")
    extra = {k: v for k, v in model.config.extra.items() if k not in ("model_card", "training", "adapt")}
    model.config = dataclasses.replace(model.config, name=f"{model.name.removesuffix('-adapted')}-adapted",
                                       extra={**extra, "adapt": data})
    lists = [item.training_list(config.list_size) for item in train_lists]
    starts_at_base = not options["refit_features"]  # else step 0 is the refitted scorer, not the base
    if not starts_at_base:  # the LM then learns what the refitted features still miss
        from resrank_rag.training.linear import feature_lists, fit_linear_scorer

        fit_linear_scorer(model, feature_lists(model, lists, vectors.encode, progress=False), warm_start=True)
    mix = TrainingMix([FixedLists(lists, spec)], config.seed)
    trainer = Trainer(config, model, mix=mix, dev=[held], embedding_cache=vectors)
    if not resuming and starts_at_base:
        held.reuse_once(base_runs)  # the step-0 evaluation is the base model's, computed above
    _train(trainer, config.eval_every, options["patience"], resume)

    evals = [h for h in trainer.history if "ndcg@10" in h]
    best = max(evals, key=lambda h: h["ndcg@10"]) if evals else {"step": 0}
    if best["step"] == 0 and starts_at_base:
        adapted_runs = base_runs
    elif held.best is not None and held.best[0] == best["ndcg@10"]:
        adapted_runs = held.best[1]
    else:  # resumed after the best evaluation: score the saved best model again
        adapted_runs = held.runs(ResRank.from_pretrained(run / "best", precision="fp32", warm_start=False))
    rows, tests = _table(held, base_runs, adapted_runs)
    better = rows[2]["nDCG@10"] > rows[1]["nDCG@10"]
    target = out / "model"
    if better:
        _publish(run / "best", target, {"rows": rows, "tests": tests, "best_step": best["step"]})
        message = (f"The adapted model beats the base on the held-out part (nDCG@10 {rows[2]['nDCG@10']:.4f} vs "
                   f"{rows[1]['nDCG@10']:.4f}); written to {target}. Use it with --model {out} (or {target}); "
                   "its SmolLM2 branch runs.")
    else:
        message = (f"The adapted model is not better than the base on the held-out part (nDCG@10 "
                   f"{rows[2]['nDCG@10']:.4f} vs {rows[1]['nDCG@10']:.4f}): keeping the base {base!r}"
                   + (f"; {target} was left as it was." if target.exists() else f"; nothing was written to {target}."))
    result = AdaptResult(
        model=str(target) if better else str(base), adapted=better, base=str(base), out=str(out), rows=rows,
        tests=tests, data=data, steps=trainer.step, best_step=best["step"], wall_s=round(time.monotonic() - started, 1),
        message=message, history=trainer.history,
    )
    _write_json(out / "report.json", result.to_dict())
    return result


def _train(trainer, every: int, patience: int, resume: bool) -> None:
    """``trainer.train`` in slices of ``every`` steps, stopping once ``patience`` evaluations bring no gain."""
    total = trainer.config.total_steps
    trainer.train(stop_after=0, resume=resume)  # evaluates the start (or loads the saved state), trains nothing
    while trainer.step < total and not _stalled(trainer.history, patience):
        target = (trainer.step // every + 1) * every if every else total
        trainer.train(stop_after=target if target < total else None)


def _stalled(history: list[dict], patience: int) -> bool:
    scores = [h["ndcg@10"] for h in history if "ndcg@10" in h]
    return bool(patience and scores) and len(scores) - 1 - scores.index(max(scores)) >= patience


def _table(held: HeldOut, base_runs: dict, adapted_runs: dict) -> tuple[list[dict], list[dict]]:
    from resrank_rag.evaluation.metrics import paired_test

    systems = {"LM off": adapted_runs["nolm"], "base": base_runs["model"], "adapted": adapted_runs["model"]}
    values = {name: {m: held.values(run, m) for m in ("nDCG@10", "RR@10")} for name, run in systems.items()}
    rows = [{"system": name, **{m: sum(v.values()) / len(v) for m, v in per.items()}} for name, per in values.items()]
    tests = [{"a": "adapted", "b": other, **paired_test(values["adapted"]["nDCG@10"], values[other]["nDCG@10"])}
             for other in ("LM off", "base")]
    return rows, tests


def _publish(best: Path, target: Path, heldout: dict) -> None:
    """Copy ``best`` to ``target`` with the held-out figures in its config, replacing ``target`` only at the end."""
    from resrank_rag.config import ResRankConfig

    staging, old = target.with_name(f".{target.name}-staging"), target.with_name(f".{target.name}-old")
    for folder in (staging, old):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(best, staging)
    config = ResRankConfig.load(staging)
    config.extra["adapt"] = {**config.extra.get("adapt", {}), "heldout": heldout}
    config.save(staging)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _queries(index, labelled, synthetic, kinds, count, write_questions, holdout, seed, targets=None):
    """(training queries, held-out queries)."""
    held = None
    if labelled is not None:
        train, held = split(_merge(resolve(index, labelled)), holdout, MIN_HELDOUT)
    if synthetic:
        pseudo = _merge(pseudo_queries(index, count, kinds, seed, write_questions, targets))
        if held is None:
            _check_count(len(pseudo), f"collection {index.collection!r} gave")
            train, held = split(pseudo, holdout, MIN_HELDOUT)
        else:
            train = pseudo
    return train, held


def _merge(queries: list[LabelledQuery]) -> list[LabelledQuery]:
    """One query per distinct text, its relevant ids merged (the highest grade wins)."""
    merged: dict[str, LabelledQuery] = {}
    for q in queries:
        key = q.query.strip()
        if key in merged:
            relevant = dict(merged[key].relevant)
            for i, g in q.relevant.items():
                relevant[i] = max(g, relevant.get(i, 0))
            negatives = dict(merged[key].negatives)
            for i, w in q.negatives.items():
                negatives[i] = max(w, negatives.get(i, 0.0))
            q = dataclasses.replace(merged[key], relevant=relevant, negatives=negatives,
                                    unlabelled_weight=min(q.unlabelled_weight, merged[key].unlabelled_weight))
        merged[key] = q
    return list(merged.values())


def _check_count(count: int, where: str) -> None:
    if count < MIN_QUERIES:
        raise ValueError(f"{where} {count} distinct queries; adapt needs at least {MIN_QUERIES} (a fifth is held out "
                         "to check the result). Add more, or use synthetic=True (--synthetic) for pseudo-queries.")


def _admin():
    from resrank_rag.adapt.lists import ADMIN

    return ADMIN


def _open(model, collection: str, path, url, api_key, base):
    from resrank_rag.index import ModelMismatchError, ResRankIndex

    try:
        return ResRankIndex(model, collection, path=path, url=url, api_key=api_key)
    except ModelMismatchError as error:
        raise ModelMismatchError(f"{error} adapt trains on the stored vectors, so the base model ({base!r}) must "
                                 "use the encoder the collection was indexed with.") from None


def _check_collection(index, model, base) -> None:
    from resrank_rag.index import ModelMismatchError

    if index.model.encoder_fingerprint != model.encoder_fingerprint:
        raise ModelMismatchError(f"the index was opened with another encoder than the base model {base!r}")
    if index.count(principal=_admin()) == 0:  # opening an existing collection checked its model record
        raise ValueError(f"collection {index.collection!r} is empty or missing; index documents first: "
                         f"resrank index PATH --collection {index.collection}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, value) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    os.replace(temporary, path)
