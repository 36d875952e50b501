"""Dual-stage, multi-task ResRank training: resumable, evaluated on a dev set, device-agnostic (accelerate)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from resrank_rag.config import ARCHITECTURE_FIELDS
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.training import losses
from resrank_rag.training.alignment import PassageSampler, alignment_loss
from resrank_rag.training.config import StageConfig, TrainConfig
from resrank_rag.training.curves import plot_curves
from resrank_rag.training.data import TrainingList, load_mix
from resrank_rag.training.dev import DevSet
from resrank_rag.encoder import DOCUMENT, QUERY, backbone, embed_with_grad, set_backbone
from resrank_rag.peft_adapters import is_peft
from resrank_rag.training.lora import add_lora

STATE_FILE = "trainer_state.pt"


class Trainer:
    """Runs the stages of a ``TrainConfig`` on a ResRank model.

    Each step samples ``lists_per_step`` lists (a pure function of seed and step), scores them with
    ``model.score_lists`` and minimises, per stage, ``infonce_weight * InfoNCE`` (encoder vectors, when
    the encoder trains) ``+ listwise_weight * listwise + distill_weight * KL-to-dense + margin_weight *
    dense margin``. When the encoder trains, passage vectors come from ``encoder.embed_with_grad`` so the
    listwise loss reaches the encoder through the reranker; when frozen, from an embedding cache.

    ``output_dir`` gets ``trainer_state.pt`` (resume point), ``history.jsonl``, ``curves.png``,
    ``model/`` (final) and ``best/`` (best dev nDCG@10, the starting model counts). With ``ema_decay`` the
    evaluations and both exports use the moving average of the trained weights (``averaged``).
    """

    def __init__(self, config: TrainConfig, model=None, base_dir: str | Path = ".", accelerator=None, *,
                 mix=None, dev=None, embedding_cache=None):
        """``mix`` (a ``TrainingMix``) and ``dev`` (objects with ``name`` and ``evaluate(model, passage_vectors)``)
        replace the ones built from ``config.datasets`` / ``config.dev``; ``embedding_cache`` (anything with
        ``encode(texts)``, e.g. vectors read back from a vector store) replaces the config's cache while the
        encoder is unchanged."""
        from accelerate import Accelerator

        from resrank_rag.model import ResRank

        self.config = config
        self.accelerator = accelerator or Accelerator()
        self.output = Path(config.output_dir)
        if model is None and config.from_untrained:  # fresh heads: architecture fields may be overridden too
            model = ResRank.from_config(dataclasses.replace(ResRank.untrained_config(config.model), **config.model_overrides))
        else:
            fixed = sorted(set(config.model_overrides) & ARCHITECTURE_FIELDS)
            if fixed:
                raise ValueError(f"{fixed} cannot be overridden on a loaded model; set from_untrained: true or change the checkpoint")
            if model is None:
                model = ResRank.from_pretrained(config.model, precision="fp32", merge_lora=False, warm_start=False, lm=True)
            model.config = dataclasses.replace(model.config, **config.model_overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # LoRA initialisation is reproducible
            add_lora(model, config.lora_parts(), config.lora)
        for part in ("encoder", "reranker"):  # a fully trained backbone must be saved with the checkpoint
            if any(stage.train[part] == "full" for stage in config.stages):
                model.config = dataclasses.replace(model.config, **{f"{part}_weights": "full"})
        self.model = model.to(self.accelerator.device)
        self._cache: EmbeddingCache | None = embedding_cache
        self._cache_fingerprint: str | None = None if embedding_cache is None else self.model.encoder_fingerprint
        self.mix = mix if mix is not None else load_mix(
            config.datasets, config.list_size, config.max_positives, config.seed, base_dir,
            encoder_vectors=(self.passage_vectors, self.model.encode_queries))
        self.dev = list(dev) if dev is not None else [
            DevSet(spec, config.list_size, config.dev_max_queries, base_dir) for spec in config.dev]
        self._passages: PassageSampler | None = None
        self.step = 0
        self.history: list[dict] = []
        self.best: float | None = None
        self._average: dict[str, torch.Tensor] | None = None
        """The moving average of every trained weight (``config.ema_decay``), by parameter name."""

    # ---------------------------------------------------------------- vectors
    def passage_vectors(self, texts: list[str]) -> np.ndarray:
        """Passage vectors of the current encoder, through an embedding cache keyed by its fingerprint."""
        fingerprint = self.model.encoder_fingerprint
        if self._cache is None or self._cache_fingerprint != fingerprint:
            path = self.config.embedding_cache
            self._cache = EmbeddingCache(self.model, path)
            self._cache_fingerprint = fingerprint
        return self._cache.encode(texts)

    def _forget_fingerprint(self) -> None:
        self.model.refresh_encoder_fingerprint()  # the encoder changed: its cache key must be recomputed

    # ---------------------------------------------------------------- stages
    def _parts(self):
        heads = [p for n, p in self.model.named_parameters() if not n.startswith(("encoder.", "reranker."))]
        return {"encoder": self.model.encoder, "reranker": self.model.reranker, "heads": heads}

    def _trainable(self, stage: StageConfig) -> list[dict]:
        """Set requires_grad for ``stage`` and return optimizer parameter groups, one per trained part."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        groups = []
        for part, holder in self._parts().items():
            mode = stage.train[part]
            if mode == "frozen":
                continue
            named = list(holder.named_parameters()) if part != "heads" else [(str(i), p) for i, p in enumerate(holder)]
            params = [p for n, p in named if mode == "full" or "lora_" in n]
            if not params:
                raise ValueError(f"stage {stage.name!r}: {part} has no {mode} parameters to train")
            for parameter in params:
                parameter.requires_grad_(True)
            prior = [p for p in params if p is self.model.rank_prior_weight]
            if prior:
                params = [p for p in params if p is not self.model.rank_prior_weight]
                groups.append({"params": prior, "lr": stage.lr["rank_prior"], "name": "rank_prior"})
            groups.append({"params": params, "lr": stage.lr[part], "name": part})
        if not groups:
            raise ValueError(f"stage {stage.name!r} trains nothing: set some part of train to lora or full")
        return groups

    def _trained_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Every parameter that any stage trains (heads, LoRA adapters, fully trained backbones), by name."""
        modes = {part: {s.train[part] for s in self.config.stages} - {"frozen"} for part in ("encoder", "reranker")}
        keep = {}
        for name, parameter in self.model.named_parameters():
            part = "encoder" if name.startswith("encoder.") else "reranker" if name.startswith("reranker.") else "heads"
            if part == "heads" or "full" in modes[part] or ("lora" in modes[part] and "lora_" in name):
                keep[name] = parameter
        return keep

    def _saved_parameters(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p in self._trained_parameters().items()}

    # ---------------------------------------------------------------- weight averaging
    def _update_average(self) -> None:
        decay = self.config.ema_decay
        if decay is None:
            return
        with torch.no_grad():
            for name, parameter in self._trained_parameters().items():
                self._average[name].mul_(decay).add_(parameter.detach(), alpha=1.0 - decay)

    @contextlib.contextmanager
    def averaged(self):
        """The model with the moving average of its trained weights in place (as it is, without ``ema_decay``)."""
        if self._average is None:
            yield self.model
            return
        parameters = self._trained_parameters()
        live = {name: parameters[name].detach().clone() for name in self._average}
        encoder = any(name.startswith("encoder.") for name in self._average)
        with torch.no_grad():
            for name, value in self._average.items():
                parameters[name].copy_(value)
        if encoder:
            self._forget_fingerprint()
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    parameters[name].copy_(value)
            if encoder:
                self._forget_fingerprint()

    # ---------------------------------------------------------------- one step
    def _passage_batch(self, texts: list[str], stage: StageConfig) -> torch.Tensor:
        """Passage vectors: through the (training) encoder when it trains, else from the embedding cache."""
        if stage.train["encoder"] != "frozen":
            return embed_with_grad(self.model.encoder, texts, DOCUMENT)
        return torch.from_numpy(self.passage_vectors(texts)).to(self.accelerator.device)

    def _batch_vectors(self, lists: list[TrainingList], stage: StageConfig):
        flat = self._passage_batch([t for item in lists for t in item.texts], stage)
        if stage.train["encoder"] != "frozen":
            queries = embed_with_grad(self.model.encoder, [item.query for item in lists], QUERY)
        else:
            queries = torch.from_numpy(self.model.encode_queries([item.query for item in lists])).to(self.accelerator.device)
        sizes = [len(item.texts) for item in lists]
        return list(torch.split(flat, sizes)), queries

    @staticmethod
    def _needs_lists(stage: StageConfig) -> bool:
        return bool(stage.listwise_weight or stage.distill_weight or stage.margin_weight
                    or (stage.infonce_weight and stage.train["encoder"] != "frozen"))

    def _alignment(self, stage: StageConfig) -> torch.Tensor:
        if self._passages is None:
            self._passages = PassageSampler([b.dataset.corpus for b in self.mix.builders], self.config.seed)
        texts = self._passages.sample(self.step, stage.alignment_passages)
        with torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16, enabled=self.config.autocast == "bf16"):
            return alignment_loss(self.model, self._passage_batch(texts, stage), texts, stage.alignment_tokens)

    def loss(self, lists: list[TrainingList], stage: StageConfig) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted multi-task loss of one batch of lists (and of alignment passages), and its parts as floats."""
        parts = {"alignment": self._alignment(stage)} if stage.alignment_weight else {}
        if lists:
            parts.update(self._list_losses(lists, stage))
        if not parts:
            raise ValueError(f"stage {stage.name!r} has no active loss: give a listwise/distill/margin/alignment weight, or train the encoder")
        return self._total(parts, stage)

    def _list_losses(self, lists: list[TrainingList], stage: StageConfig) -> dict[str, torch.Tensor]:
        passages, queries = self._batch_vectors(lists, stage)
        device = queries.device
        parts: dict[str, torch.Tensor] = {}
        if stage.listwise_weight or stage.distill_weight or stage.margin_weight:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.config.autocast == "bf16"):
                scores = self.model.score_lists([item.query for item in lists], passages, queries, [item.texts for item in lists])
            scores = [s.float() for s in scores]
            labels = [torch.tensor(item.labels, device=device) for item in lists]
            if stage.anchor == "nolm":
                with torch.no_grad():
                    anchor = self.model.scores_without_lm(queries.detach(), [p.detach() for p in passages],
                                                          queries=[item.query for item in lists], texts=[item.texts for item in lists])
            else:
                anchor = [(p @ q).detach() for p, q in zip(passages, queries)]
            listwise = losses.LISTWISE[stage.listwise_loss]
            if stage.listwise_weight:
                weights = [None if item.weights is None else torch.tensor(item.weights, device=device) for item in lists]
                if any(w is not None for w in weights) and stage.listwise_loss != "ranknet":
                    raise ValueError(f"stage {stage.name!r}: weighted lists (feedback) need listwise_loss 'ranknet'")
                parts["listwise"] = torch.stack([listwise(s, y, stage.temperature) if w is None else
                                                 losses.ranknet(s, y, stage.temperature, w)
                                                 for s, y, w in zip(scores, labels, weights)]).mean()
            if stage.distill_weight:
                parts["distill"] = torch.stack([losses.dense_distillation(s, d, stage.temperature) for s, d in zip(scores, anchor)]).mean()
            if stage.margin_weight:
                parts["margin"] = torch.stack([losses.dense_margin(s, d, y) for s, d, y in zip(scores, anchor, labels)]).mean()
        if stage.infonce_weight and stage.train["encoder"] != "frozen":
            best = [int(np.argmax(item.labels)) for item in lists]
            positives = torch.stack([p[i] for p, i in zip(passages, best)])
            negatives = torch.cat([p[torch.tensor(item.labels, device=device) <= 0] for p, item in zip(passages, lists)])
            parts["infonce"] = losses.info_nce(queries, positives, negatives, stage.infonce_temperature)
        return parts

    @staticmethod
    def _total(parts: dict[str, torch.Tensor], stage: StageConfig) -> tuple[torch.Tensor, dict[str, float]]:
        weights = {"listwise": stage.listwise_weight, "distill": stage.distill_weight, "margin": stage.margin_weight,
                   "infonce": stage.infonce_weight, "alignment": stage.alignment_weight}
        total = sum(weights[k] * v for k, v in parts.items())
        return total, {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    def _step(self, stage: StageConfig, optimizer, scheduler, params) -> dict[str, float]:
        torch.manual_seed(self.config.seed * 1_000_003 + self.step)
        self.model.eval()  # frozen parts (and negative mining) see no dropout
        lists = self.mix.sample(self.step, self.config.lists_per_step, self.accelerator.process_index) if self._needs_lists(stage) else []
        self.model.encoder.train(stage.train["encoder"] != "frozen")
        self.model.reranker.train(stage.train["reranker"] != "frozen")
        total, logged = self.loss(lists, stage)
        optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(total)
        if self.accelerator.num_processes > 1:  # the model is not DDP-wrapped: average gradients by hand
            for parameter in params:
                if parameter.grad is not None:
                    parameter.grad.copy_(self.accelerator.reduce(parameter.grad, "mean"))
        if stage.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, stage.grad_clip)
        optimizer.step()
        self._update_average()
        logged["rate_factor"] = stage.rate_factor(scheduler.last_epoch)
        scheduler.step()
        if stage.train["encoder"] != "frozen":
            self._forget_fingerprint()
        return logged

    # ---------------------------------------------------------------- evaluation and saving
    def evaluate(self) -> dict[str, float] | None:
        if not self.dev or not self.accelerator.is_main_process:
            return None
        self.model.eval()
        with self.averaged():
            per_set = [dev.evaluate(self.model, self.passage_vectors) for dev in self.dev]
        metrics = {key: float(np.mean([m[key] for m in per_set])) for key in ("ndcg@10", "nolm_ndcg@10", "dense_ndcg@10")}
        if len(per_set) > 1:
            metrics.update({f"{dev.name}/{key}": value for dev, m in zip(self.dev, per_set) for key, value in m.items()})
        record = {"step": self.step, **metrics}
        self.history.append(record)
        if self.best is None or metrics["ndcg@10"] > self.best:
            self.best = metrics["ndcg@10"]
            with self.averaged():
                self.export(self.output / "best", extra={"dev": record})
        tqdm.write(f"step {self.step}: dev nDCG@10 {metrics['ndcg@10']:.4f} "
                   f"(LM off {metrics['nolm_ndcg@10']:.4f}, dense {metrics['dense_ndcg@10']:.4f})")
        return metrics

    def export(self, folder: Path, extra: dict | None = None) -> None:
        """``save_pretrained`` the model; a backbone with weights='full' and LoRA adapters is saved merged."""
        model, encoder, reranker, config = self.model, backbone(self.model.encoder), self.model.reranker, self.model.config
        if config.encoder_weights == "full" and is_peft(encoder):
            set_backbone(model.encoder, copy.deepcopy(encoder).merge_and_unload())
        if config.reranker_weights == "full" and is_peft(reranker):
            model.reranker = copy.deepcopy(reranker).merge_and_unload()
        model.config = dataclasses.replace(config, extra={**config.extra, "training": {"step": self.step, **(extra or {})}})
        try:
            model.save_pretrained(folder)
        finally:
            set_backbone(model.encoder, encoder)
            model.reranker, model.config = reranker, config

    def save_state(self, optimizer, scheduler, stage_index: int) -> None:
        if not self.accelerator.is_main_process:
            return
        self.output.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "stage_index": stage_index, "parameters": self._saved_parameters(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "history": self.history, "best": self.best,
                 "average": None if self._average is None else {k: v.cpu().clone() for k, v in self._average.items()}}
        temporary = self.output / (STATE_FILE + ".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.output / STATE_FILE)  # atomic: a kill never leaves half a state
        with open(self.output / "history.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(h) + "\n" for h in self.history)

    def _load_state(self) -> dict | None:
        path = self.output / STATE_FILE
        if not path.exists():
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        current = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in state["parameters"].items():
                if name.startswith("encoder.model."):  # saved while the encoder was not yet a SentenceTransformer
                    name = "encoder.0.model." + name.removeprefix("encoder.model.")
                if name not in current:
                    raise ValueError(f"{path} holds {name}, which this model lacks: the config changed since it was saved")
                current[name].copy_(tensor)
        self._forget_fingerprint()
        self.step, self.history, self.best = state["step"], state["history"], state["best"]
        if self.config.ema_decay is not None and state.get("average") is not None:
            self._average = {k: v.to(self.accelerator.device) for k, v in state["average"].items()}
        return state

    # ---------------------------------------------------------------- the loop
    def train(self, stop_after: int | None = None, resume: bool = True) -> list[dict]:
        """Run (or continue) every stage; returns the history. ``stop_after`` ends early at that global
        step after saving, as a kill would (then ``train()`` again resumes)."""
        state = self._load_state() if resume else None
        if self.config.ema_decay is not None and self._average is None:  # the average starts at the starting weights
            self._average = {name: p.detach().clone() for name, p in self._trained_parameters().items()}
        self.output.mkdir(parents=True, exist_ok=True)
        self.config.save_yaml(self.output / "train_config.yaml")
        if state is None:
            self.evaluate()
        start = 0
        for stage_index, stage in enumerate(self.config.stages):
            end = start + stage.steps
            if self.step >= end:
                start = end
                continue
            ranks = self._needs_lists(stage)  # an alignment-only stage is not evaluated: dev selects ranking steps
            groups = self._trainable(stage)
            params = [p for g in groups for p in g["params"]]
            optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, stage.rate_factor)
            if state is not None and state["stage_index"] == stage_index and self.step > start:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            self._forget_fingerprint()
            bar = tqdm(total=stage.steps, initial=self.step - start, desc=f"stage {stage.name}", unit="step",
                       disable=not self.accelerator.is_main_process)
            while self.step < end:
                if stop_after is not None and self.step >= stop_after:
                    bar.close()
                    self.save_state(optimizer, scheduler, stage_index)
                    return self.history
                logged = self._step(stage, optimizer, scheduler, params)
                self.step += 1
                self.history.append({"step": self.step, "stage": stage.name, "stage_start": start, **logged})
                bar.update(1)
                bar.set_postfix(loss=f"{logged['loss']:.4f}")
                if ranks and self.config.eval_every and self.step % self.config.eval_every == 0:
                    self.evaluate()
                if self.config.save_every and self.step % self.config.save_every == 0:
                    self.save_state(optimizer, scheduler, stage_index)
            bar.close()
            if ranks and not (self.config.eval_every and self.step % self.config.eval_every == 0):
                self.evaluate()
            self.save_state(optimizer, scheduler, stage_index)
            start = end
        if self.accelerator.is_main_process:
            self.model.eval()
            with self.averaged():
                self.export(self.output / "model")
            plot_curves(self.history, self.output / "curves.png")
        return self.history
