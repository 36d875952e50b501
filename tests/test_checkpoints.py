"""Loading checkpoints: names, folders and the clear errors for broken ones."""

import json

import pytest

from resrank_rag import ResRank
from resrank_rag.testing import tiny_resrank


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "ckpt"
    tiny_resrank().save_pretrained(folder)
    return folder


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResRank.from_pretrained(str(tmp_path / "nowhere"))


def test_folder_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a ResRank checkpoint"):
        ResRank.from_pretrained(tmp_path)


def test_corrupt_config(saved):
    (saved / "resrank_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        ResRank.from_pretrained(saved)


def test_unknown_config_field(saved):
    data = json.loads((saved / "resrank_config.json").read_text())
    (saved / "resrank_config.json").write_text(json.dumps({**data, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        ResRank.from_pretrained(saved)


def test_corrupt_heads(saved):
    (saved / "heads.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        ResRank.from_pretrained(saved)


def test_missing_heads(saved):
    (saved / "heads.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        ResRank.from_pretrained(saved)


def test_heads_made_for_other_backbones(saved, tmp_path):
    tiny_resrank(encoder_dim=16).save_pretrained(tmp_path / "other")
    (saved / "heads.safetensors").write_bytes((tmp_path / "other" / "heads.safetensors").read_bytes())
    with pytest.raises(ValueError, match="other backbones"):
        ResRank.from_pretrained(saved)


def test_unknown_name_without_hub(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="Unknown ResRank model"):
        ResRank.from_pretrained("no-such-org/no-such-resrank")
