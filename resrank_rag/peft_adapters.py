"""LoRA adapters on the backbones (peft, an optional dependency): recognising an adapted backbone and
loading a saved adapter onto one."""

from __future__ import annotations

from pathlib import Path

from torch import nn

ADAPTER_CONFIG = "adapter_config.json"


def is_peft(module: nn.Module | None) -> bool:
    """Whether ``module`` is a backbone wrapped with peft adapters (False when peft is not installed)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(module, PeftModel)


def with_saved_adapter(module: nn.Module, folder: Path) -> nn.Module:
    """``module`` wrapped with the LoRA adapter saved in ``folder``, or ``module`` itself when there is none."""
    if not (folder / ADAPTER_CONFIG).exists():
        return module
    try:
        from peft import PeftModel
    except ImportError:
        raise ImportError(f"{folder} is a LoRA adapter, which needs peft: pip install 'resrank-rag[train]'") from None
    return PeftModel.from_pretrained(module, folder)
