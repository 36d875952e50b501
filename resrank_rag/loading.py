"""Loading and saving ResRank checkpoints: where a name or folder points (packaged, local, hub), how each
part loads (encoder, reranker LM, heads) and what ``save_pretrained`` writes. ``ResRank.from_pretrained``
and ``ResRank.save_pretrained`` call these."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from resrank_rag import backbones
from resrank_rag.config import CONFIG_FILE, ResRankConfig
from resrank_rag.encoder import backbone, set_backbone
from resrank_rag.inference import prepare_for_inference
from resrank_rag.peft_adapters import is_peft, with_saved_adapter
from resrank_rag.precision import check_precision

HEADS_FILE = "heads.safetensors"
DEFAULT_MODEL = "resrank-minilm-smollm2"
KNOWN_MODELS = {DEFAULT_MODEL: ResRankConfig(name=DEFAULT_MODEL)}
PACKAGED_CHECKPOINTS = Path(__file__).parent / "checkpoints"


def from_pretrained(cls, name_or_path, device, *, precision: str, merge_lora: bool, warm_start: bool, lm: bool | None):
    """``ResRank.from_pretrained`` (its docstring says what each argument does); ``cls`` is the class to build."""
    check_precision(precision)  # fail before the slow loading
    if lm is not None and not isinstance(lm, bool):
        raise TypeError(f"lm must be True, False or None, got {lm!r}")
    folder = locate(str(name_or_path))
    if folder is None:
        model = cls.from_config(KNOWN_MODELS[str(name_or_path)])
    else:
        model = load_folder(cls, folder, lm)
    model = model.to(device) if device else model
    return prepare_for_inference(model, precision, merge_lora, warm_start)


def from_config(cls, config: ResRankConfig):
    """A ``cls`` with the configured backbones and freshly initialised (zero-residual) heads."""
    return cls(config, load_encoder(config), *load_reranker(config))


def untrained_config(name_or_path: str | Path) -> ResRankConfig:
    """The configuration ``ResRank.untrained`` builds from: a packaged name's defaults, or a folder's config."""
    name = str(name_or_path)
    folder = None if name in KNOWN_MODELS else locate(name)
    return KNOWN_MODELS[name] if folder is None else ResRankConfig.load(folder)


def locate(name: str) -> Path | None:
    """The checkpoint folder ``name`` stands for (None: a packaged name to build from its defaults)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).exists():
            return path
        if (path / "model" / CONFIG_FILE).exists():  # a `resrank adapt --out` folder: its adapted model
            return path / "model"
        if (path / "report.json").exists() and (path / "run").is_dir():
            raise FileNotFoundError(
                f"{path} is a `resrank adapt` folder whose adapted model did not beat its base on the held-out "
                f"queries, so it holds no model; keep using the base (see {path / 'report.json'})"
            )
        raise FileNotFoundError(f"{path} has no {CONFIG_FILE}: it is not a ResRank checkpoint folder")
    if name in KNOWN_MODELS:
        packaged = PACKAGED_CHECKPOINTS / name
        if not (packaged / CONFIG_FILE).exists():
            raise FileNotFoundError(
                f"the packaged checkpoint {name!r} is missing its {CONFIG_FILE} in {packaged}: the resrank-rag "
                "install is incomplete; reinstall it (pip install --force-reinstall resrank-rag), or use "
                f"ResRank.untrained({name!r}) for fresh, untrained heads"
            )
        return packaged
    if path.exists() or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"ResRank checkpoint folder {name!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as error:  # the hub library raises many kinds; all mean "not available"
        raise FileNotFoundError(
            f"Unknown ResRank model {name!r}: not a folder, not a packaged name "
            f"({', '.join(KNOWN_MODELS)}), and the Hugging Face Hub could not provide it ({error})"
        ) from None


def load_encoder(config: ResRankConfig, sub: Path | None = None):
    """The encoder (a SentenceTransformer): as saved in checkpoint subfolder ``sub`` ('full' weights), else
    its backbone by name plus the LoRA adapter ``sub`` may hold."""
    name = _saved_or_named(sub, config.encoder, config.encoder_weights)
    encoder = backbones.load_encoder(name, config.pooling, config.max_passage_tokens, config.query_prefix, config.passage_prefix)
    if sub is not None and config.encoder_weights != "full":
        set_backbone(encoder, with_saved_adapter(backbone(encoder), sub))
    return encoder


def load_reranker(config: ResRankConfig, sub: Path | None = None):
    """(model, tokenizer) of the reranker LM, cut to ``config.reranker_layers``, loaded as ``load_encoder`` does."""
    model, tokenizer = backbones.load_reranker(_saved_or_named(sub, config.reranker, config.reranker_weights))
    backbones.keep_layers(model, config.reranker_layers)
    if sub is not None and config.reranker_weights != "full":
        model = with_saved_adapter(model, sub)
    return model, tokenizer


def _saved_or_named(sub: Path | None, name: str, weights: str) -> str:
    if sub is None or weights != "full":
        return name
    if not (sub / "config.json").exists():
        raise FileNotFoundError(f"{sub} is missing: the checkpoint says its weights are saved there")
    return str(sub)


def load_folder(cls, folder: Path, lm: bool | None = None):
    """A ``cls`` from a checkpoint folder; ``lm`` False (or the config's ``lm_branch`` off) loads no LM backbone."""
    config = ResRankConfig.load(folder)
    if lm is not None:
        config = dataclasses.replace(config, lm_branch=lm)
    encoder = load_encoder(config, folder / "encoder")
    reranker, tokenizer = load_reranker(config, folder / "reranker") if config.lm_branch else (None, None)
    model = cls(config, encoder, reranker, tokenizer)
    heads_path = folder / HEADS_FILE
    if not heads_path.exists():
        raise FileNotFoundError(f"{heads_path} is missing: the checkpoint is incomplete")
    try:
        heads = load_file(str(heads_path))
    except Exception as error:
        raise ValueError(f"{heads_path} is corrupt ({error}); re-save the checkpoint") from None
    expected = model.heads_state_dict()
    if not set(expected) <= set(heads) or (model.reranker is not None and set(heads) != set(expected)):
        raise ValueError(f"{heads_path} holds {sorted(heads)}, expected {sorted(expected)}")
    if model.reranker is None:  # the LM branch's heads wait unused, to be saved again as they are
        model._lm_heads_at_rest = {k: v for k, v in heads.items() if k not in expected}
        model._lm_folder_at_rest = folder / "reranker" if (folder / "reranker").is_dir() else None
    for key, tensor in heads.items():
        if key in expected and tensor.shape != expected[key].shape:
            raise ValueError(
                f"{heads_path}: {key} has shape {tuple(tensor.shape)} but the backbones "
                f"({config.encoder}, {config.reranker}) need {tuple(expected[key].shape)}; "
                "the checkpoint was made for other backbones"
            )
    model.load_state_dict(heads, strict=False)
    return model.eval()


def save(model, folder: str | Path) -> None:
    """``ResRank.save_pretrained``: config, heads and, per backbone, nothing (reference), a LoRA adapter, or
    full weights (the encoder as a SentenceTransformer folder, the reranker LM with its tokenizer)."""
    if model.precision != "fp32":
        raise ValueError(f"this model runs at precision={model.precision!r}; load it with precision='fp32' to save it")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.heads_state_dict().items()}, str(folder / HEADS_FILE))
    encoder_backbone = backbone(model.encoder)
    if is_peft(encoder_backbone):
        encoder_backbone.save_pretrained(folder / "encoder")
    elif model.config.encoder_weights == "full":
        model.encoder.save(str(folder / "encoder"), create_model_card=False)
    if model.reranker is None:  # loaded without its LM: its saved LM weights or adapter go along unchanged
        source = model._lm_folder_at_rest
        if source is not None and source.resolve() != (folder / "reranker").resolve():
            shutil.copytree(source, folder / "reranker", dirs_exist_ok=True)
    elif is_peft(model.reranker) or model.config.reranker_weights == "full":
        model.reranker.save_pretrained(folder / "reranker")
        if model.config.reranker_weights == "full":
            model.reranker_tokenizer.save_pretrained(folder / "reranker")
