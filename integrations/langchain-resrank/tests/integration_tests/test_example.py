"""The offline example runs end to end (with the fake chat model, to stay fast) and reranks sensibly."""

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "retrieve_rerank_generate.py"


def test_example_runs_offline(capsys):
    spec = importlib.util.spec_from_file_location("retrieve_rerank_generate", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    answer = example.main(["--llm", "fake", "--question", "How long is parental leave?", "--top-n", "2"])
    printed = capsys.readouterr().out
    assert answer == "(fake chat model) See the context above."
    context = printed.split("Reranked context")[1].split("Answer")[0]
    assert context.count("  0.") + context.count("  -0.") == 2
    assert "Parental leave is 20 weeks" in context.splitlines()[1]  # the passage that answers, ranked first
