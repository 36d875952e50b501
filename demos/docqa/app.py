"""Assemble the demo (model, corpus, index, generator) and run it in the terminal or as a web page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from demos.docqa import corpus
from demos.docqa.chat import chat_turn
from demos.docqa.feedback import feedback_path
from demos.docqa.generate import SmolLM2Generator, make_generator
from demos.docqa.pipeline import Answer, DocQA, open_index
from resrank_rag.feedback import FeedbackStore

console = Console(stderr=True)


@dataclass
class DemoSettings:
    """Everything ``resrank demo`` can be told; defaults run on the shipped documents, offline."""

    docs: Path | None = None
    users: Path | None = None
    """A JSON file of demo users and their groups, e.g. {"alice": ["staff", "hr"]} (see docs/document-qa.md)."""
    user: str | None = None
    """The demo user the terminal modes answer for."""
    data: Path | None = None
    limit: int | None = None
    model: str = "resrank-minilm-smollm2"
    llm: str | None = None
    k: int = 20
    context_passages: int = 3
    first_stage: str = "hybrid"
    max_new_tokens: int = 96
    index_path: str | None = None
    precision: str = "auto"
    """The reranker LM's precision (``ResRank.from_pretrained``; docs/precision.md)."""
    generate: bool = True
    """False: answer with the extractive answer only, loading no generator (``--no-generate``)."""
    feedback_db: Path | None = None
    """The SQLite file of users' 👍/👎 (default ``feedback_path``: beside the index, in memory with it)."""


def describe_ranking(model) -> tuple[bool, str]:
    """(untrained?, what the checkpoint adds to dense cosine with its encoder, in words for the page), saying how
    much user feedback it was adapted on."""
    untrained, words = _ranking_words(model)
    return untrained, words + feedback_figures(model)


def feedback_figures(model) -> str:
    """' It was adapted on N feedback events from M lists ...' from ``extra.adapt.feedback``, or ''."""
    adapt = model.config.extra.get("adapt") or {}
    counts = adapt.get("feedback") if isinstance(adapt, dict) else None
    if not isinstance(counts, dict) or not {"events", "lists"} <= counts.keys():
        return ""
    return (f" It was adapted on {counts['events']} feedback events from {counts['lists']} lists "
            "(`resrank adapt --feedback`).")


def _ranking_words(model) -> tuple[bool, str]:
    prior = float(model.rank_prior_weight.detach()) if model.config.rank_prior else 0.0
    if not model.runs_lm:
        features = model.linear_scorer is not None and bool(model.linear_scorer.weight.detach().any())
        if not features and not prior:
            return True, "The ResRank checkpoint is untrained and runs no LM, so it ranks like dense cosine with its encoder."
        kind = "learned lexical-match and score features, " if features else ""
        return False, (f"The ResRank checkpoint runs no LM by default: it ranks by dense cosine, {kind}and its first-stage "
                       f"rank prior ({prior:.3f} x -ln rank), in about a millisecond. Its SmolLM2 branch did not beat that "
                       f"outside the collections it learned, so `resrank adapt` turns it on for your documents."
                       f"{lm_branch_figures(model)}")
    heads_zero = all(not head.weight.detach().any() for head in (model.passage_head, model.query_head))
    if heads_zero and not prior and model.linear_scorer is None:
        return True, ("The ResRank checkpoint is untrained (zero residual heads), so it ranks like dense cosine "
                "with its encoder; differences from the hybrid first stage show that reordering.")
    if heads_zero:
        return False, (f"The ResRank checkpoint's residual heads are zero: it ranks by dense cosine plus its learned "
                f"first-stage rank prior ({prior:.3f} x -ln rank), so it keeps part of the hybrid order. "
                f"The SmolLM2 pass adds nothing to its scores yet.{lm_branch_figures(model)}")
    return False, ("The ResRank checkpoint runs its SmolLM2 branch (one position per passage, one forward)."
                   + lm_branch_figures(model))


def lm_branch_figures(model) -> str:
    """' Measured nDCG@10: ...' from the checkpoint's recorded figures (``extra.lm_branch``: per set, the
    default path and the systems it was compared with), or ''."""
    figures = model.config.extra.get("lm_branch") or {}
    parts = []
    for name, row in figures.items():
        if isinstance(row, dict) and row:
            numbers = ", ".join(f"{system} {value:.3f}" for system, value in row.items() if isinstance(value, (int, float)))
            parts.append(f"{name}: {numbers}")
    return f" Measured nDCG@10: {'; '.join(parts)}." if parts else ""


def load_chunks(settings: DemoSettings, report: corpus.ReadReport | None = None):
    """(label, chunks) of the corpus the settings name: --data, --docs, or the shipped documents."""
    if settings.data is not None:
        return f"BEIR {settings.data.name}", corpus.chunks_of(corpus.beir_documents(settings.data, settings.limit))
    if settings.docs is not None:
        return str(settings.docs), corpus.chunks_of(corpus.folder_documents(settings.docs, report))
    return "the shipped documents (project docs + CPython documentation topics)", corpus.shipped_chunks()


def build(settings: DemoSettings, model=None, generator=None) -> tuple[DocQA, dict]:
    """The QA pipeline and the facts the page shows about it."""
    report = corpus.ReadReport(echo=lambda message: console.print(f"[yellow]{escape(message)}[/]"))
    label, chunks = load_chunks(settings, report)
    if settings.docs is not None:
        console.print(f"[bold]demo:[/] {escape(report.summary())}")
    users = json.loads(settings.users.read_text(encoding="utf-8")) if settings.users is not None else {}
    if not isinstance(users, dict) or not all(isinstance(g, list) for g in users.values()):
        raise ValueError(f'{settings.users} must map user names to lists of groups, e.g. {{"alice": ["staff", "hr"]}}')
    if model is None:
        from resrank_rag import ResRank

        console.print(f"[bold]demo:[/] loading ResRank {settings.model}")
        model = ResRank.from_pretrained(settings.model, precision=settings.precision)
    slug = "".join(c if c.isalnum() else "-" for c in label.split(" (")[0].lower())[:40]
    console.print(f"[bold]demo:[/] {len(chunks)} chunks from {label}")
    index = open_index(model, chunks, slug, settings.index_path)
    if not settings.generate:
        generator = None
    elif generator is None:
        console.print("[bold]demo:[/] loading the generator")
        generator = make_generator(settings.llm, settings.max_new_tokens)
    source_root = settings.docs if settings.docs is not None and settings.docs.is_dir() else None
    store_path = feedback_path(settings.feedback_db, settings.index_path)
    qa = DocQA(
        index, generator, k=settings.k, context_passages=settings.context_passages, first_stage=settings.first_stage,
        users=users, source_root=source_root, problems=report.problems, feedback=FeedbackStore(store_path),
    )
    untrained, ranking = describe_ranking(model)
    if feedback_figures(model):
        console.print(f"[bold]demo:[/] {model.name}:{escape(feedback_figures(model))}")
    console.print(f"[bold]demo:[/] 👍/👎 are stored in {escape(str(store_path))}")
    if generator is None:
        generated = "Generation is off (--no-generate)."
    elif isinstance(generator, SmolLM2Generator):
        generated = (f"The generated answer comes from {generator.name}, a 135M-parameter model: it answers from the "
                     "retrieved passages and can be wrong or vague; check the cited passages. Plug in a better LLM with --llm.")
    else:
        generated = f"The generated answer comes from {generator.name}."
    extractive = "The answer from the documents is their sentences closest to the question, shown before generation."
    note = " ".join(part for part in (extractive, generated, ranking) if part)
    info = {  # the same for every user: /api/info adds what each may read (chunks, file problems)
        "corpus": label,
        "model": model.name + (" (untrained)" if untrained else ""),
        "precision": model.precision,
        "first_stage": settings.first_stage,
        "k": settings.k,
        "generator": generator.name if generator is not None else "none (--no-generate)",
        "generate": generator is not None,
        "feedback_db": str(store_path),
        "note": note,
    }
    return qa, info


def print_answer(answer: Answer) -> None:
    """The extractive answer, the generated one, the passages, retrieval vs ResRank order and stage timings."""
    out = Console()
    if answer.search_query != answer.question:
        out.print(f"[dim]searched for: {escape(answer.search_query)}[/]")
    found = "\n".join(f"{escape(s.text)} [bold][{s.passage}] {escape(s.label)}[/]" for s in answer.extractive)
    out.print(Panel(found or "(no passage found)", title=escape(answer.question), subtitle="from the documents (extractive)"))
    if answer.generated:
        out.print(Panel(escape(answer.answer) or "(empty answer)", title="Generated answer", subtitle=answer.generator))
        out.print(f"[dim]citations: {answer.citations}[/]")
    for number, passage in enumerate(answer.passages, 1):
        mark = "*" if number in answer.cited else " "
        out.print(f"{mark}[{number}] [bold]{escape(passage.label or passage.title)}[/] {escape(passage.title)}: {escape(passage.text[:160])}…")
    table = Table(title="retrieval order vs ResRank order")
    for column in ("retrieval #", "ResRank #", "retrieval score", "ResRank score", "passage"):
        table.add_column(column, overflow="fold")
    for c in answer.candidates[:10]:
        table.add_row(str(c.retrieval_rank), str(c.resrank_rank), f"{c.retrieval_score:.4f}", f"{c.resrank_score:.4f}", escape(c.title))
    out.print(table)
    out.print("timings: " + ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in answer.timings_ms.items()))


def run_terminal(qa: DocQA, chat: bool, user: str | None = None) -> None:
    """Ask questions at a prompt until an empty line or Ctrl+D; in chat mode follow-ups keep the history."""
    history: list[dict] = []
    console.print("Ask a question (empty line to quit)" + (" — chat mode, follow-ups use the history" if chat else ""))
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            return
        if not question:
            return
        answer = chat_turn(qa, history, question, user=user) if chat else qa.ask(question, user=user)
        history = answer.history
        print_answer(answer)
