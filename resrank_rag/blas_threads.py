"""Keep numpy's BLAS single-threaded around small numpy work that runs next to the reranker's torch forward.

OpenBLAS (numpy's BLAS) lets its worker threads busy-wait for a while after each multi-threaded call. On a
small machine they then take the cores from the torch forward that follows: on the 2-core development CPU
a ResRank rerank right after an embedded-Qdrant query took 183 ms instead of 117 ms (median over 40
SciFact queries, ``OPENBLAS_NUM_THREADS=1`` gave 118 ms). Embedded Qdrant scores points with numpy, so
the index runs its Qdrant calls inside ``single_threaded_blas()``. torch's own threads are not touched.
"""

from __future__ import annotations

import contextlib
import sys

_cached: tuple[int, object] | None = None


def _controller():
    """A threadpoolctl controller over the BLAS libraries loaded now. Building one inspects every loaded
    library (about 1 ms), so it is kept until new modules are imported, which may load another BLAS
    (scipy brings its own OpenBLAS)."""
    global _cached
    if _cached is None or _cached[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        _cached = (len(sys.modules), controller)
    return _cached[1]


@contextlib.contextmanager
def single_threaded_blas():
    """Inside: every BLAS library loaded in this process (numpy's OpenBLAS, scipy's, MKL) uses one thread."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
