import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def packaged_model():
    """The real default model over the packaged backbones at fp32 (tests compare it with fp32 references;
    test_packaged_model checks that the default precision ranks like it), loaded once per test session."""
    from resrank_rag import ResRank

    return ResRank.from_pretrained("resrank-minilm-smollm2", precision="fp32")


@pytest.fixture
def tiny():
    from resrank_rag.testing import tiny_resrank

    return tiny_resrank()


@pytest.fixture
def one_thread():
    """torch on one thread for the test (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``):
    for tiny models on a shared 2-core machine, thread hand-offs cost more than they save."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

