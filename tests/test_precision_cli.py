"""`--precision` on every command that loads a model, and in `resrank serve` / the demo settings."""

import json

import pytest
from typer.testing import CliRunner

from resrank_rag.cli import app
from resrank_rag.testing import tiny_resrank


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "ckpt"
    tiny_resrank().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("command", ["rerank", "search", "eval", "bench", "demo", "serve"])
def test_every_model_loading_command_has_the_option(command):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--precision" in result.output


def test_rerank_runs_at_the_given_precision(checkpoint, tmp_path):
    candidates = tmp_path / "c.jsonl"
    candidates.write_text("".join(json.dumps(t) + "\n" for t in ("cats purr", "dogs bark", "fish swim")))
    result = CliRunner().invoke(app, ["rerank", "cats", "-c", str(candidates), "--model", str(checkpoint), "--precision", "int8", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 3 and all(type(r["score"]) is float for r in rows)


def test_a_bad_precision_is_a_usage_error_that_lists_the_choices(checkpoint, tmp_path):
    candidates = tmp_path / "c.jsonl"
    candidates.write_text('"cats purr"\n')
    result = CliRunner().invoke(app, ["rerank", "cats", "-c", str(candidates), "--model", str(checkpoint), "--precision", "int4"])
    assert result.exit_code == 2
    assert "precision must be one of auto, fp32, bf16, fp16, int8" in " ".join(result.output.replace("│", " ").split())


def test_serve_settings_carry_the_precision_to_the_worker(checkpoint):
    pytest.importorskip("fastapi")
    from resrank_rag.serve.server import load_model
    from resrank_rag.serve.settings import ServeSettings

    settings = ServeSettings.from_json(ServeSettings(model=str(checkpoint), precision="bf16").to_json())
    assert load_model(settings).precision == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        ServeSettings(precision="half")


def test_the_demo_loads_its_model_at_the_given_precision(monkeypatch):
    from demos.docqa import app as demo_app
    from resrank_rag import ResRank

    seen = {}

    def fake_from_pretrained(name, **kwargs):
        seen.update(kwargs, name=name)
        raise RuntimeError("stop here")

    monkeypatch.setattr(ResRank, "from_pretrained", fake_from_pretrained)
    with pytest.raises(RuntimeError, match="stop here"):
        demo_app.build(demo_app.DemoSettings(precision="int8"))
    assert seen == {"name": "resrank-minilm-smollm2", "precision": "int8"}
