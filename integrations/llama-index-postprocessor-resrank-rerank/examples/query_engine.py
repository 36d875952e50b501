"""A LlamaIndex query engine with ResRank: embedded Qdrant, ResRankEmbedding, ResRankRerank, MockLLM. Offline.

    python examples/query_engine.py
    python examples/query_engine.py --data-dir ./my_docs --question "How do I reset my password?"

The two ResRank lines are the embed model and the node postprocessor; both share one loaded model.
The reranker reads each retrieved node's vector back from Qdrant, so no passage is encoded twice.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")

from llama_index.core import Document, SimpleDirectoryReader, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.embeddings.resrank import ResRankEmbedding
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient
from resrank_rag import ResRank

SAMPLE_DOCUMENTS = [
    "ResRank compresses every passage into one vector, the same vector the vector store holds for retrieval.",
    "The reranker language model reads the query text and then one input position per candidate passage.",
    "A residual connection mixes each passage's encoder vector with the reranker's hidden state at its position.",
    "Scores are cosine similarities, so the whole candidate list is ranked in a single forward pass.",
    "Qdrant can run embedded inside a Python process, storing its collections in a local folder.",
    "LlamaIndex query engines retrieve nodes, post-process them, and pass the survivors to an LLM.",
    "BM25 is a lexical ranking function that scores documents by term frequency and inverse document frequency.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder of documents to index (default: a few built-in sentences)")
    parser.add_argument("--question", default="How does ResRank rank all candidates at once?")
    parser.add_argument("--qdrant-path", help="folder for the embedded Qdrant (default: a temporary folder)")
    parser.add_argument("--model", default="resrank-minilm-smollm2", help="ResRank model name or checkpoint folder")
    args = parser.parse_args()

    documents = (
        SimpleDirectoryReader(args.data_dir).load_data()
        if args.data_dir
        else [Document(text=text, metadata={"source": f"sample-{i}"}) for i, text in enumerate(SAMPLE_DOCUMENTS)]
    )
    model = ResRank.from_pretrained(args.model)  # loaded once, shared by the embedding and the reranker
    with tempfile.TemporaryDirectory() as scratch:
        vector_store = QdrantVectorStore(
            collection_name="docs", client=QdrantClient(path=args.qdrant_path or scratch)
        )
        index = VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=ResRankEmbedding(model=model),
        )
        query_engine = index.as_query_engine(
            llm=MockLLM(max_tokens=32),
            similarity_top_k=20,
            node_postprocessors=[ResRankRerank(model=model, top_n=3, vector_store=vector_store)],
        )
        response = query_engine.query(args.question)
        print(f"Question: {args.question}\n")
        print("Reranked context passed to the LLM:")
        for rank, node in enumerate(response.source_nodes, 1):
            print(f"  {rank}. score {node.score:.4f}  {node.node.get_content()[:100]}")
        print(f"\nMockLLM answer (placeholder text): {str(response)[:120]}")
        vector_store.client.close()


if __name__ == "__main__":
    main()
