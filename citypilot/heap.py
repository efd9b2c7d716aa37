"""The garbage collector tuned for a long-running server process.

Ingest allocates a few container objects per observation (parsed JSON, readings,
change events) that live for one batch. With CPython's default thresholds (a young
collection every 700 allocations, an older one every ten of those) a batch of 5,000
observations sets off dozens of collections, and each older one walks the whole
long-lived heap: the loaded city, the type registry, the imported modules. Measured
with ``citypilot bench ingest`` (docs/benchmarks.md), that was about a third of the
server's time. Once the process has started, its heap is moved out of the
collector's sight (``gc.freeze``) and young collections run every 20,000
allocations: reference cycles are still collected, just in fewer, larger passes.
"""

from __future__ import annotations

import gc

#: Allocations between young collections, and collections between older ones.
THRESHOLDS = (20_000, 20, 20)


def settle_heap() -> None:
    """Call once startup is done: collect, freeze what is alive, collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
