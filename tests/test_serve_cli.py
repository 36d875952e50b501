"""`resrank serve` on the command line, and the load-test tool on a tiny server (seconds, loopback)."""

import asyncio
import socket

import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="serving needs the serve extra: pip install -e '.[serve]'")
from resrank_rag.cli import app
from resrank_rag.serve import ServeSettings, create_app
from resrank_rag.serve.loadtest import measure, run_local, table
from resrank_rag.serve.server import serving_in_thread
from resrank_rag.testing import tiny_resrank


def test_serve_is_a_command_with_its_options():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--host", "--port", "--workers", "--max-batch", "--api-key", "--max-queue"):
        assert option in result.output


def test_a_busy_port_is_reported_before_the_model_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--model", "/nonexistent", "--port", str(port)])
    assert result.exit_code != 0 and "busy" in result.output


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_batch"):
        ServeSettings(max_batch=0)
    with pytest.raises(ValueError, match="api_key is empty"):
        ServeSettings(api_key="  ")
    assert ServeSettings.from_json(ServeSettings(port=9000).to_json()).port == 9000
    with pytest.raises(ValueError, match="max_batch_tokens"):
        ServeSettings(max_batch_tokens=0)


def test_the_position_budget_of_a_forward_defaults_by_device():
    assert ServeSettings().batch_tokens("cpu") == 512  # wider forwards cost more per list on a CPU (settings.py)
    assert ServeSettings().batch_tokens("cuda:0") == 16384
    assert ServeSettings(max_batch_tokens=100).batch_tokens("cuda") == 100


def test_load_test_tool_finds_no_failed_or_mixed_up_responses():
    with serving_in_thread(create_app(tiny_resrank(), ServeSettings(max_batch=8))) as url:
        cell = asyncio.run(measure(url, clients=4, k=5, seconds=0.5, server="batched"))
    assert cell.requests > 0 and cell.failed == 0 and cell.mismatched == 0
    assert "| batched | 4 | 5 |" in table([cell])


def test_load_test_measures_both_servers_cell_by_cell_with_clients_in_another_process(tmp_path):
    tiny_resrank().save_pretrained(tmp_path / "tiny")
    cells = run_local(str(tmp_path / "tiny"), clients=[3], ks=[4], seconds=0.3, max_batch=8, log=lambda line: None)
    assert [(c.server, c.clients, c.k) for c in cells] == [("batched", 3, 4), ("one forward per request", 3, 4)]
    assert all(c.requests > 0 and c.failed == 0 and c.mismatched == 0 for c in cells)
    assert "batching gain" in table(cells)


def test_resrank_serve_runs_a_checkpoint_folder(tmp_path):
    """The real command in a subprocess: loads a saved checkpoint, answers on loopback, stops on SIGTERM."""
    import subprocess
    import sys
    import time

    import httpx

    model = tiny_resrank()
    model.save_pretrained(tmp_path / "tiny")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "resrank_rag.cli", "serve", "--model", str(tmp_path / "tiny"), "--port", str(port),
               "--threads", "1", "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        docs = ["Paris is in France.", "Bananas are yellow."]
        response = httpx.post(url + "/rerank", json={"query": "where is paris", "texts": docs})
        assert response.status_code == 200
        assert [r["index"] for r in response.json()] == [r.index for r in model.rerank("where is paris", docs)]
        assert httpx.get(url + "/info").json()["encoder_fingerprint"] == model.encoder_fingerprint
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert process.returncode in (0, -15), output  # uvicorn re-raises SIGTERM after a graceful shutdown
    assert "Traceback" not in output, output
