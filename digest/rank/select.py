"""Pure: no I/O. Per-subscriber top-k over a score matrix, with exact tie order.

The order is score descending, then column ascending; columns are papers sorted by id,
so ties go to the smaller paper id whatever order the papers came in. argpartition picks
an arbitrary member of a tie at the k-th place, so rows with such a tie are re-sorted in
full (rare: scores are continuous).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHUNK = 2048  # subscribers per block: bounds memory to a few chunk x papers arrays


def top_rows(
    scores: np.ndarray,
    rows: np.ndarray,
    k: np.ndarray,
    floor: np.ndarray,
    blocked: Sequence[Sequence[int]],
) -> list[np.ndarray]:
    """For subscriber i: the columns of `scores[rows[i]]` with score >= max(floor[i], 0),
    not in blocked[i], best first, at most k[i]. Negative scores mean "never pick"."""
    n_sub = len(rows)
    n_cols = scores.shape[1]
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * n_sub
    if n_cols == 0 or n_sub == 0:
        return out
    for lo in range(0, n_sub, CHUNK):
        hi = min(lo + CHUNK, n_sub)
        block = scores[rows[lo:hi]]  # a copy: blocked cells can be cleared in place
        for i in range(lo, hi):
            if blocked[i]:
                block[i - lo, blocked[i]] = -1.0
        lim = np.maximum(floor[lo:hi], 0.0)[:, None]
        block[block < lim] = -1.0
        kk = int(min(max(int(k[lo:hi].max()), 0), n_cols))
        if kk == 0:
            continue
        if kk < n_cols:
            cand = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        else:
            cand = np.broadcast_to(np.arange(n_cols), (hi - lo, n_cols)).copy()
        vals = np.take_along_axis(block, cand, axis=1)
        order = np.lexsort((cand, -vals), axis=1)
        cand = np.take_along_axis(cand, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        if kk < n_cols:
            thr = vals[:, -1]
            ties = ((block >= thr[:, None]).sum(axis=1) > kk) & (thr >= 0)
            for r in np.flatnonzero(ties):
                full = np.lexsort((np.arange(n_cols), -block[r]))[:kk]
                cand[r] = full
                vals[r] = block[r, full]
        # Rows are sorted best first, so the pickable entries (>= 0) of a row's first
        # k[i] are a prefix: one count per row, then a slice.
        n_i = np.minimum(np.clip(k[lo:hi], 0, None), kk)
        counts = np.minimum(n_i, (vals >= 0).sum(axis=1)).tolist()
        for j, c in enumerate(counts):
            out[lo + j] = cand[j, :c]
    return out
