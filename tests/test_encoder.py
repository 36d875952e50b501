"""The encoder is a sentence-transformers SentenceTransformer: the packaged MiniLM's vectors and fingerprint are
those of the former hand-written encoder (AutoModel + pooling), prefixes are ST prompts, pooling is ST's
Pooling module, and training reaches its weights."""

import json
import shutil

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

from resrank_rag import backbones
from resrank_rag.backbones import cache_dir
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.encoder import DOCUMENT, QUERY, backbone, embed_with_grad
from resrank_rag.evaluation.beir import passage_text
from resrank_rag.testing import perturb_heads, tiny_resrank
from resrank_rag.training.config import LoraSettings
from resrank_rag.training.lora import add_lora
from resrank_rag.training.losses import listnet
from tests.samples import QUERY as SAMPLE_QUERY
from tests.samples import TEXTS

DEFAULT_FINGERPRINT = "0307f775d82f02a3"
LONG_TEXT = "Paris is the capital and largest city of France, on the Seine. " * 40  # far beyond 256 tokens
INSTRUCTION = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"


def hand_pooled(model, tokenizer, texts, pooling: str, max_tokens: int) -> np.ndarray:
    """What the encoder computed before it was a SentenceTransformer: AutoModel states, right-padded,
    masked mean / last real token / first token, L2-normalised."""
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"]
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    elif pooling == "last":
        pooled = hidden[torch.arange(hidden.size(0)), mask.sum(1) - 1]
    else:
        pooled = hidden[:, 0]
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_the_default_encoder_is_a_sentence_transformer(packaged_model):
    encoder = packaged_model.encoder
    assert type(encoder) is SentenceTransformer
    assert [type(module) for module in encoder] == [Transformer, Pooling, Normalize]
    assert encoder[1].pooling_mode == "mean" and encoder.max_seq_length == 256
    assert encoder.prompts == {QUERY: "", DOCUMENT: ""}
    assert packaged_model.encoder_fingerprint == DEFAULT_FINGERPRINT  # caches and indexes made before still match


def test_default_vectors_equal_the_former_encoders(packaged_model):
    from transformers import AutoModel, AutoTokenizer

    path = backbones.resolve(backbones.MINILM_ID)
    texts = [*TEXTS, LONG_TEXT]
    expected = hand_pooled(AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path), texts, "mean", 256)
    np.testing.assert_allclose(packaged_model.encode(texts), expected, rtol=0, atol=1e-5)  # one batch
    np.testing.assert_allclose(packaged_model.encode(texts, batch_size=2), expected, rtol=0, atol=1e-5)  # ST's encode
    np.testing.assert_allclose(packaged_model.encode_queries(texts), expected, rtol=0, atol=1e-5)  # no prefixes


def test_default_vectors_equal_the_stored_cache(packaged_model, shared_data):
    """The user cache of the default fingerprint holds SciFact passages the former encoder made (copied from
    ../shared/cache); the SentenceTransformer gives the same vectors."""
    path = cache_dir() / "embeddings" / f"{DEFAULT_FINGERPRINT}.sqlite"
    if not path.exists():
        pytest.skip(f"no stored embedding cache at {path}")
    with open(shared_data / "scifact" / "corpus.jsonl", encoding="utf-8") as handle:
        texts = [passage_text(json.loads(line)) for _, line in zip(range(40), handle)]
    cache = EmbeddingCache(packaged_model, path)
    try:
        found = [(t, v) for t, v in zip(texts, cache.get(texts)) if v is not None][:5]
    finally:
        cache.close()
    if not found:
        pytest.skip(f"{path} holds none of the first SciFact passages")
    got = packaged_model.encode([t for t, _ in found])
    np.testing.assert_allclose(got, np.stack([v for _, v in found]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "last", "cls"])
def test_pooling_maps_to_st_pooling_over_a_plain_hugging_face_backbone(pooling):
    model = tiny_resrank(pooling=pooling)
    assert model.encoder[1].pooling_mode == {"mean": "mean", "last": "lasttoken", "cls": "cls"}[pooling]
    texts = ["short", "a somewhat longer text with more tokens in it", *TEXTS]
    expected = hand_pooled(backbone(model.encoder), model.encoder.tokenizer, texts, pooling, 64)
    np.testing.assert_allclose(model.encode(texts), expected, rtol=0, atol=1e-5)
    if pooling != "mean":
        assert not np.allclose(model.encode(texts), tiny_resrank().encode(texts), atol=1e-3)


def test_prefixes_are_the_encoders_prompts():
    """A Qwen3-Embedding-style instruction on queries and a passage prefix reach the encoder as ST prompts."""
    model = tiny_resrank(query_prefix=INSTRUCTION, passage_prefix="passage: ")
    assert model.encoder.prompts == {QUERY: INSTRUCTION, DOCUMENT: "passage: "}
    plain = model.encoder.encode  # ST's own encode, no prompt: the prefix written by hand
    np.testing.assert_allclose(model.encode_queries([SAMPLE_QUERY]), plain([INSTRUCTION + SAMPLE_QUERY]), atol=1e-6)
    np.testing.assert_allclose(model.encode(TEXTS), plain(["passage: " + t for t in TEXTS]), atol=1e-6)
    np.testing.assert_allclose(model.encoder.encode_query([SAMPLE_QUERY]), model.encode_queries([SAMPLE_QUERY]), atol=1e-6)
    assert not np.allclose(model.encode_queries([SAMPLE_QUERY]), plain([SAMPLE_QUERY]), atol=1e-3)
    grad = embed_with_grad(model.encoder, [SAMPLE_QUERY], QUERY).detach().numpy()
    np.testing.assert_allclose(grad, model.encode_queries([SAMPLE_QUERY]), atol=1e-5)  # training sees the same vectors
    assert model.encoder_fingerprint != tiny_resrank().encoder_fingerprint


def test_a_sentence_transformer_folder_loads_with_its_modules_and_its_pooling_is_checked(tmp_path):
    tiny = tiny_resrank()
    tiny.save_pretrained(tmp_path / "ckpt")  # full weights: the encoder is saved as an ST folder
    assert (tmp_path / "ckpt" / "encoder" / "modules.json").exists()
    loaded = type(tiny).from_pretrained(tmp_path / "ckpt", precision="fp32")
    assert [type(m) for m in loaded.encoder] == [Transformer, Pooling, Normalize]
    assert loaded.encoder_fingerprint == tiny.encoder_fingerprint
    np.testing.assert_allclose(loaded.encode(TEXTS), tiny.encode(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="pools by 'mean'.*pooling='cls'.*set pooling='mean'"):
        backbones.load_encoder(str(tmp_path / "ckpt" / "encoder"), pooling="cls")


def test_a_checkpoint_whose_encoder_was_saved_as_a_plain_hugging_face_folder_still_loads(tmp_path):
    """Before the encoder was a SentenceTransformer, 'full' weights were saved as the bare AutoModel and tokenizer."""
    tiny = tiny_resrank()
    tiny.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(tmp_path / "ckpt" / "encoder")
    backbone(tiny.encoder).save_pretrained(tmp_path / "ckpt" / "encoder")
    tiny.encoder.tokenizer.save_pretrained(tmp_path / "ckpt" / "encoder")
    loaded = type(tiny).from_pretrained(tmp_path / "ckpt", precision="fp32")
    assert loaded.encoder_fingerprint == tiny.encoder_fingerprint
    np.testing.assert_allclose(loaded.encode(TEXTS), tiny.encode(TEXTS), atol=1e-6)


def _one_step(model, parameters) -> None:
    """One optimizer step of a listwise loss through the encoder (differentiable vectors) and the reranker."""
    optimizer = torch.optim.SGD(parameters, lr=1.0)
    model.encoder.train()
    passages = embed_with_grad(model.encoder, TEXTS, DOCUMENT)
    scores = model.score_lists([SAMPLE_QUERY], [passages])[0]
    loss = listnet(scores, torch.tensor([1.0] + [0.0] * (len(TEXTS) - 1)))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()


def test_one_optimizer_step_changes_the_encoders_weights():
    model = tiny_resrank()
    perturb_heads(model)
    before = {k: v.clone() for k, v in backbone(model.encoder).state_dict().items()}
    vectors, fingerprint = model.encode(TEXTS), model.encoder_fingerprint
    _one_step(model, list(model.encoder.parameters()))
    after = backbone(model.encoder).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert not np.allclose(model.encode(TEXTS), vectors, atol=1e-4)
    model.refresh_encoder_fingerprint()
    assert model.encoder_fingerprint != fingerprint  # full weights are part of the fingerprint


def test_one_optimizer_step_changes_the_encoders_lora_weights_only():
    model = tiny_resrank()
    perturb_heads(model)
    add_lora(model, {"encoder"}, LoraSettings(r=4, encoder_targets=["query", "value"]))
    named = dict(backbone(model.encoder).named_parameters())
    lora = {k: p for k, p in named.items() if "lora_B" in k}
    assert lora and all(p.abs().sum() == 0 for p in lora.values())  # LoRA starts as the identity
    frozen = {k: p.detach().clone() for k, p in named.items() if "lora_" not in k}
    _one_step(model, list(lora.values()))
    assert any(p.abs().sum() > 0 for p in lora.values())
    assert all(torch.equal(named[k], frozen[k]) for k in frozen)
