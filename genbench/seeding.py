"""Seeds of independent random streams, derived from a run's seed: the one formula training and
measures use (initialization, data order, augmentation, held-out splits, measure generators).

Changing the formula changes every trained network and every measure drawn from it: it would have
to bump the store's runs (their ids) and every measure's version. The corruptions still draw their
streams with a formula of their own (``corruptions.derived_seed``): moving them onto this one would
change every corrupted dataset under unchanged run ids, so that measures on existing stores would
see labels their models were never trained on; it waits for a data version in the run id."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for ``purpose`` (e.g. "init", "data-order") from ``seed``."""
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
