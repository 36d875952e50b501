"""Inference precision of the reranker LM: the names, what ``auto`` picks on this hardware, the conversion.

Only the reranker LM changes precision. The encoder, the projector and the heads stay float32: the
encoder's vectors must match the ones already in vector stores and caches (its fingerprint keys them),
and the small heads cost nothing. Training always uses float32 models (``precision="fp32"``).

``auto`` = the fastest precision this device runs natively among those measured to move nDCG@10 by at
most ``FIDELITY_BAR``. The candidates: int8 on a CPU with VNNI (avx512_vnni, avx_vnni, amx_int8), bf16 on
a CPU with avx512_bf16 or amx_bf16, bf16 on a CUDA GPU that supports it, else fp32 (fp16 is not
measured). Where a CPU runs several, which one is fastest depends on the CPU (int8 on a Zen 4 with VNNI,
bf16 on a Xeon with AMX), so ``auto_precision`` times the model's own LM at each, once per machine, and
keeps the answer in the user cache. See docs/precision.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn

from resrank_rag.int8 import quantize_linears

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

FIDELITY_BAR = 0.005
"""A reduced precision may be picked by ``auto`` only if it moves nDCG@10 by at most this much."""

MEASURED_NDCG_SHIFT: dict[str, float | None] = {"int8": 0.00322, "bf16": 0.00146, "fp16": None}
"""The measured decision behind ``auto``: per precision, the largest |nDCG@10 - fp32 nDCG@10| over
TREC DL 2020 and SciFact, from ``benchmarks/precision_fidelity.py`` with a checkpoint whose LM branch is
non-zero. None means not measured, so ``auto`` never picks it. Update this table only from a measurement.

Where these figures come from (the table in docs/precision.md, "Fidelity"; the run's output is
``runs/fidelity/precision_fidelity-fused-prefix.json``, not in git), measured with the fused int8 products and
the cached prompt prefix (resrank_rag/int8.py, resrank_rag/prompt_cache.py):
- checkpoint ``runs/cand-lora-400`` (issue 14 round 1, ``configs/cpu-lm-lora-anchored.yaml`` at its best
  dev step 400: LoRA on the SmolLM2 layers, non-zero residual heads, candidate features);
- TREC DL 2020 (shipped BM25 top-100, 54 queries) and SciFact test (BM25 top-100, 300 queries), the same
  candidates and stored fp32 vectors at every precision;
- the 2-core development CPU (avx512_vnni and avx512_bf16), torch 2.13.
- int8: DL 2020 -0.00322, SciFact -0.00290 (Kendall tau 0.977 / 0.976, same top 10 on 28% / 29% of queries);
- bf16: DL 2020 -0.00146, SciFact +0.00030 (Kendall tau 0.994 / 0.994, same top 10 on 74% / 79%);
- fp16: not measured (CUDA only), so a GPU without bf16 stays at fp32.
The run before those two changes gave int8 -0.00029 / -0.00078 and bf16 -0.00209 / +0.00084 with the same
Kendall taus. Rounding activations to int8 turns float differences of 1e-7 (what the cached prefix changes
at fp32) into score differences of up to 0.025, so int8's nDCG@10 shift is one draw of its rounding
noise, and it moved this much between the two runs.
bf16 is a number format, not a kernel: CUDA's bf16 rounds weights and activations the same way, so the
bf16 entry stands for CUDA too until a GPU run of the fidelity script says otherwise."""

MEASURED_ON = "runs/cand-lora-400; TREC DL 2020 + SciFact test, BM25 top-100; 2-core CPU (avx512_vnni, avx512_bf16); 2026-12-01, fused int8 + cached prompt prefix"
"""One line naming the measurement behind ``MEASURED_NDCG_SHIFT`` (printed by ``resrank bench``)."""

CPU_FASTEST_FIRST = ("int8", "bf16")
"""CPU precisions in the order ``native_precisions`` lists them (int8 was faster on the Zen 4 development
CPU). Which is faster depends on the CPU, so where both are native ``auto_precision`` times them."""

_INT8_CPU_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
_BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def check_precision(name: str) -> str:
    """``name`` if it is a known precision, else a ValueError that lists them."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return name


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS or Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def native_precisions(device: torch.device | str, flags: set[str] | None = None) -> list[str]:
    """Reduced precisions that ``device`` runs natively (faster than fp32), fastest first."""
    device = torch.device(device)
    if device.type == "cuda":
        return ["bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    if device.type != "cpu":
        return []
    flags = cpu_flags() if flags is None else flags
    needs = {"int8": _INT8_CPU_FLAGS, "bf16": _BF16_CPU_FLAGS}
    return [p for p in CPU_FASTEST_FIRST if flags & needs[p]]


def keeps_ranking(precision: str) -> bool:
    """Whether ``precision`` has been measured to keep the ranking (see ``MEASURED_NDCG_SHIFT``)."""
    if precision == "fp32":
        return True
    shift = MEASURED_NDCG_SHIFT.get(precision)
    return shift is not None and shift <= FIDELITY_BAR


def resolve_precision(name: str, device: torch.device | str = "cpu", flags: set[str] | None = None) -> str:
    """The concrete precision to run: ``auto`` becomes the fastest native one that keeps the ranking, else fp32."""
    name = check_precision(name)
    device = torch.device(device)
    if name == "auto":
        return next((p for p in native_precisions(device, flags) if keeps_ranking(p)), "fp32")
    if name == "int8" and device.type != "cpu":
        raise ValueError(f"precision='int8' runs on CPU only; on {device.type} use 'bf16' or 'fp16'")
    if name == "fp16" and device.type == "cpu":
        raise ValueError("precision='fp16' is slow on CPUs; use 'bf16' or 'int8' on CPU, fp16 on CUDA")
    return name


SPEED_FILE = "precision-speed.json"
"""In the user cache: per machine and LM shape, the measured forward times behind ``auto``'s pick."""


def auto_precision(model, flags: set[str] | None = None) -> str:
    """What ``auto`` runs ``model``'s reranker LM at on this machine: the fastest of the native precisions
    that keep the ranking. With one candidate that is it; with several (a CPU with both VNNI and bf16),
    each is timed on a copy of the LM once per machine and LM shape, and the answer is cached."""
    device = torch.device(model.device)
    candidates = [p for p in native_precisions(device, flags) if keeps_ranking(p)]
    if device.type != "cpu" or len(candidates) < 2:
        return candidates[0] if candidates else "fp32"
    key = _speed_key(model.reranker, candidates)
    path = _speed_path()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        times = time_precisions(model.reranker, candidates)
        known[key] = {"ms": times, "fastest": min(times, key=times.get), "cpu": _cpu_name(), "threads": torch.get_num_threads()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=2) + "\n")
        except OSError:
            pass  # a read-only cache: measure again next time
    return known[key]["fastest"]


def time_precisions(reranker: nn.Module, candidates: list[str], positions: int = 114, repeats: int = 5) -> dict[str, float]:
    """Fastest ms of one forward over ``positions`` input vectors (a query and 100 candidates) of a copy of
    ``reranker`` at each precision; the precisions take turns in every repeat, so a load change on the
    machine hits them alike, and the minimum is the least disturbed call."""
    hidden = int(reranker.config.hidden_size)
    inputs = torch.randn(1, positions, hidden, generator=torch.Generator().manual_seed(0)) * 0.02
    copies = {p: convert_module(copy.deepcopy(reranker), p) for p in candidates}
    times: dict[str, list[float]] = {p: [] for p in candidates}
    with torch.inference_mode():
        for repeat in range(repeats + 1):  # the first round warms up
            for precision, lm in copies.items():
                start = time.perf_counter()
                lm(inputs_embeds=inputs.to(DTYPES.get(precision, torch.float32)), use_cache=False)
                if repeat:
                    times[precision].append((time.perf_counter() - start) * 1000)
    return {p: round(min(t), 2) for p, t in times.items()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _speed_key(reranker: nn.Module, candidates: list[str]) -> str:
    config = reranker.config
    shape = [getattr(config, "model_type", "?"), config.hidden_size, config.num_hidden_layers,
             getattr(config, "intermediate_size", None)]
    parts = [_cpu_name(), torch.__version__, torch.get_num_threads(), shape, sorted(candidates)]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _speed_path() -> Path:
    from resrank_rag.backbones import cache_dir

    return cache_dir() / SPEED_FILE


def convert_module(module: nn.Module, precision: str) -> nn.Module:
    """Convert an LM in place to a concrete precision for inference (int8: its Linear layers); returns it."""
    if precision not in DTYPES and precision != "int8":
        raise ValueError(f"convert_module needs a concrete precision ({', '.join(PRECISIONS[1:])}), got {precision!r}")
    if precision == "int8":
        quantize_linears(module)
    elif precision != "fp32":
        module.to(DTYPES[precision])
    return module.eval()


def apply_precision(model, precision: str) -> None:
    """Run ``model.reranker`` at ``precision``, in place; it still takes and returns float32 tensors."""
    convert_module(model.reranker, precision)
    if precision in ("bf16", "fp16"):
        _cast_io(model.reranker, DTYPES[precision])
    model.precision = precision
    model._prefix_cache.clear()  # the prompt prefix's states were computed with the old weights


def _cast_io(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast ``inputs_embeds`` to ``dtype`` on the way in and ``last_hidden_state`` to float32 on the way out."""

    def cast_in(_module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and embeds.is_floating_point():
            kwargs["inputs_embeds"] = embeds.to(dtype)
        return args, kwargs

    def cast_out(_module, _args, _kwargs, output):
        if getattr(output, "last_hidden_state", None) is not None:
            output.last_hidden_state = output.last_hidden_state.float()
        return output

    module.register_forward_pre_hook(cast_in, with_kwargs=True)
    module.register_forward_hook(cast_out, with_kwargs=True)
