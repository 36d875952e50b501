"""Inference precision, merged LoRA and warm start on the tiny model (resrank_rag/precision.py, inference.py)."""

import json
import numpy as np
import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

from resrank_rag import ResRank
from resrank_rag import precision as precision_module
from resrank_rag.encoder import backbone, set_backbone
from resrank_rag.int8 import Int8FusedMember, Int8Linear, quantize_linears
from resrank_rag.precision import resolve_precision
from resrank_rag.testing import perturb_heads, tiny_resrank

QUERY = "how do cats purr"
TEXTS = [f"passage {i} about {topic}" for i, topic in enumerate(["cats", "dogs", "purring", "engines", "birds"] * 6)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny model with non-zero residual heads, saved once."""
    model = tiny_resrank()
    perturb_heads(model)
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    model.save_pretrained(folder)
    return folder


def _scores(model, vectors=None):
    results = model.rerank(QUERY, TEXTS, vectors=vectors)
    return np.array([r.score for r in sorted(results, key=lambda r: r.index)]), results


@pytest.mark.parametrize("name", ["fp32", "bf16", "int8"])
def test_every_precision_reranks_to_plain_floats(checkpoint, name):
    model = ResRank.from_pretrained(checkpoint, precision=name)
    assert model.precision == name
    for results in (model.rerank(QUERY, TEXTS), model.rerank(QUERY, vectors=model.encode(TEXTS), query_vector=model.encode_query(QUERY))):
        assert len(results) == len(TEXTS)
        assert all(type(r.score) is float and np.isfinite(r.score) for r in results)
    assert model.encode(TEXTS).dtype == np.float32  # the encoder stays fp32 at every precision


def test_reduced_precisions_really_convert_the_reranker(checkpoint):
    bf16 = ResRank.from_pretrained(checkpoint, precision="bf16", warm_start=False)
    assert {p.dtype for p in bf16.reranker.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.encoder.parameters()} == {torch.float32}
    int8 = ResRank.from_pretrained(checkpoint, precision="int8", warm_start=False)
    assert not any(isinstance(m, nn.Linear) for m in int8.reranker.modules())
    # per layer: q, k, v as one fused product, gate and up as another, o and down on their own
    assert sum(isinstance(m, Int8FusedMember) for m in int8.reranker.modules()) == 2 * 5
    assert sum(isinstance(m, Int8Linear) for m in int8.reranker.modules()) == 2 * 4


def test_fused_int8_siblings_compute_exactly_what_separate_int8_layers_do(checkpoint):
    fused = ResRank.from_pretrained(checkpoint, precision="fp32", warm_start=False)
    separate = ResRank.from_pretrained(checkpoint, precision="fp32", warm_start=False)
    assert quantize_linears(fused.reranker) == quantize_linears(separate.reranker, fuse=False) == 2 * 7
    x = torch.randn(3, 9, fused.reranker.config.hidden_size)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    with torch.inference_mode():
        got = fused.reranker(inputs_embeds=x, attention_mask=mask).last_hidden_state
        expected = separate.reranker(inputs_embeds=x, attention_mask=mask).last_hidden_state
    assert torch.equal(got, expected)
    group = fused.reranker.layers[0].self_attn.int8_q_proj_k_proj_v_proj
    assert getattr(group._cache, "entry", None) is None  # every member served: nothing held after the forward


@pytest.mark.parametrize("name", ["bf16", "int8"])
def test_reduced_precision_ranks_close_to_fp32_with_a_nonzero_lm_branch(checkpoint, name):
    reference = ResRank.from_pretrained(checkpoint, precision="fp32")
    vectors = reference.encode(TEXTS)
    expected, _ = _scores(reference, vectors)
    query_vector = torch.from_numpy(reference.encode_query(QUERY))[None]
    without_lm = reference.scores_without_lm(query_vector, [torch.from_numpy(vectors)])[0].numpy()
    assert kendalltau(without_lm, expected).statistic < 0.8  # the LM branch moves this ranking a lot
    got, _ = _scores(ResRank.from_pretrained(checkpoint, precision=name), vectors)
    assert not np.array_equal(got, expected)  # the reduced precision really ran
    np.testing.assert_allclose(got, expected, atol=0.01)  # scores spread over about 0.09 here
    assert kendalltau(got, expected).statistic > 0.9


def test_merged_lora_scores_like_the_adapters_and_keeps_the_fingerprint(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = tiny_resrank()
    for part, module, tokenizer in (("enc", backbone(base.encoder), base.encoder.tokenizer), ("rr", base.reranker, base.reranker_tokenizer)):
        module.save_pretrained(tmp_path / part)
        tokenizer.save_pretrained(tmp_path / part)
    model = tiny_resrank(encoder=str(tmp_path / "enc"), reranker=str(tmp_path / "rr"), encoder_weights="reference", reranker_weights="reference")
    set_backbone(model.encoder, get_peft_model(backbone(model.encoder), LoraConfig(r=4, target_modules=["query", "value"], init_lora_weights=False)))
    model.reranker = get_peft_model(model.reranker, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    perturb_heads(model)
    model.save_pretrained(tmp_path / "ckpt")

    adapters = ResRank.from_pretrained(tmp_path / "ckpt", precision="fp32", merge_lora=False)
    merged = ResRank.from_pretrained(tmp_path / "ckpt", precision="fp32")
    assert "lora" in type(adapters.reranker).__module__ + repr(adapters.reranker)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert merged.encoder_fingerprint == adapters.encoder_fingerprint
    np.testing.assert_allclose(merged.encode(TEXTS), adapters.encode(TEXTS), atol=1e-5)
    expected, _ = _scores(adapters)
    got, results = _scores(merged)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (merged.config.encoder_weights, merged.config.reranker_weights) == ("full", "full")
    merged.save_pretrained(tmp_path / "merged")  # a merged model saves its backbones, not a dropped adapter
    resaved, _ = _scores(ResRank.from_pretrained(tmp_path / "merged", precision="fp32"))
    np.testing.assert_allclose(resaved, got, atol=1e-6)


def test_from_pretrained_warms_up_once_unless_told_not_to(checkpoint, monkeypatch):
    calls = []
    original = ResRank.score_lists
    monkeypatch.setattr(ResRank, "score_lists", lambda self, *a, **k: calls.append(len(a[0])) or original(self, *a, **k))
    ResRank.from_pretrained(checkpoint, precision="fp32")
    assert calls == [1]
    ResRank.from_pretrained(checkpoint, precision="fp32", warm_start=False)
    assert calls == [1]


def test_loading_leaves_the_thread_count_alone(checkpoint):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ResRank.from_pretrained(checkpoint, precision="int8")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["int4", "float16", "", None, "FP32"])
def test_unknown_precision_names_fail_before_loading(name):
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16, int8"):
        ResRank.from_pretrained("/no/such/checkpoint", precision=name)


def test_precisions_the_device_cannot_run_say_what_to_use():
    with pytest.raises(ValueError, match="CPU only.*bf16"):
        resolve_precision("int8", "cuda")
    with pytest.raises(ValueError, match="slow on CPUs.*bf16"):
        resolve_precision("fp16", "cpu")


def test_a_reduced_precision_model_refuses_to_save(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="precision='fp32' to save"):
        ResRank.from_pretrained(checkpoint, precision="int8", warm_start=False).save_pretrained(tmp_path / "x")


def test_auto_stays_fp32_until_a_precision_is_measured_to_keep_the_ranking(monkeypatch):
    flags = {"avx512_vnni", "avx512_bf16"}
    monkeypatch.setattr(precision_module, "MEASURED_NDCG_SHIFT", {"int8": None, "bf16": None, "fp16": None})
    assert resolve_precision("auto", "cpu", flags) == "fp32"
    monkeypatch.setattr(precision_module, "MEASURED_NDCG_SHIFT", {"int8": 0.001, "bf16": 0.002, "fp16": None})
    assert resolve_precision("auto", "cpu", flags) == "int8"  # the fastest that keeps the ranking
    assert resolve_precision("auto", "cpu", {"avx512_bf16"}) == "bf16"  # no VNNI: int8 is not native
    assert resolve_precision("auto", "cpu", set()) == "fp32"
    monkeypatch.setattr(precision_module, "MEASURED_NDCG_SHIFT", {"int8": 0.02, "bf16": 0.002, "fp16": None})
    assert resolve_precision("auto", "cpu", flags) == "bf16"  # int8 moved nDCG@10 too much


@pytest.mark.parametrize("shape, bias", [((7, 48), True), ((2, 5, 48), False), ((1, 48), True)])
def test_int8_linear_is_close_to_the_float_layer(shape, bias):
    torch.manual_seed(0)
    layer = nn.Linear(48, 24, bias=bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = layer(x)
    got = Int8Linear(layer.weight, layer.bias)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).norm() / expected.norm()) < 0.02
    stack = nn.Sequential(nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 24))
    assert quantize_linears(stack) == 2 and isinstance(stack[2], Int8Linear)


@pytest.mark.parametrize("flags, expected", [
    ({"avx512f", "avx512_vnni", "avx512_bf16"}, "int8"),  # this development CPU: int8 is the fastest that held the bar
    ({"avx_vnni"}, "int8"),
    ({"amx_int8", "amx_bf16"}, "int8"),
    ({"avx512f", "avx512_bf16"}, "bf16"),  # bf16 but no VNNI
    ({"avx2", "fma"}, "fp32"),  # neither: fp32
    (set(), "fp32"),  # flags unreadable (macOS, Windows)
])
def test_auto_resolves_on_the_measured_table_as_documented(flags, expected, monkeypatch, checkpoint):
    """The shipped MEASURED_NDCG_SHIFT (not a patched one), with the CPU's flags mocked; where int8 and
    bf16 both run natively, the timing says int8 is faster (as on the Zen 4 development CPU)."""
    assert all(shift is None or shift <= precision_module.FIDELITY_BAR for shift in precision_module.MEASURED_NDCG_SHIFT.values())
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(precision_module, "time_precisions", lambda lm, candidates: {"int8": 60.0, "bf16": 90.0})
    assert resolve_precision("auto", "cpu") == expected
    assert ResRank.from_pretrained(checkpoint, warm_start=False).precision == expected  # the default is auto


@pytest.mark.parametrize("bf16_supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_is_bf16_where_supported_and_never_the_unmeasured_fp16(bf16_supported, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert precision_module.MEASURED_NDCG_SHIFT["fp16"] is None
    assert resolve_precision("auto", "cuda") == expected


def test_auto_is_resolved_once_at_load_and_recorded(monkeypatch, checkpoint):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx512_bf16"})
    model = ResRank.from_pretrained(checkpoint, precision="auto", warm_start=False)
    assert model.precision == "bf16" and {p.dtype for p in model.reranker.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float32}  # the encoder is fp32 at every precision


def test_auto_times_the_candidates_once_per_machine_and_picks_the_fastest(monkeypatch, checkpoint):
    """On a CPU with both VNNI and bf16 (an Intel Xeon with AMX, say) auto runs what this machine runs fastest."""
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: {"avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"})
    calls = []

    def timed(lm, candidates):
        calls.append(sorted(candidates))
        assert {p.dtype for p in lm.parameters()} == {torch.float32}  # timed from the fp32 LM
        return {"int8": 95.3, "bf16": 89.2}

    monkeypatch.setattr(precision_module, "time_precisions", timed)
    assert ResRank.from_pretrained(checkpoint, warm_start=False).precision == "bf16"
    assert ResRank.from_pretrained(checkpoint, warm_start=False).precision == "bf16"
    assert calls == [["bf16", "int8"]]  # measured once, then read from the cache
    saved = json.loads(precision_module._speed_path().read_text())  # the test's own file (conftest.py)
    assert [entry["ms"] for entry in saved.values()] == [{"int8": 95.3, "bf16": 89.2}]


def test_time_precisions_runs_each_candidate_on_a_copy(checkpoint):
    model = ResRank.from_pretrained(checkpoint, precision="fp32", warm_start=False)
    times = precision_module.time_precisions(model.reranker, ["int8", "bf16"])
    assert set(times) == {"int8", "bf16"} and all(t > 0 for t in times.values())
    assert {p.dtype for p in model.reranker.parameters()} == {torch.float32}  # the model itself is untouched
