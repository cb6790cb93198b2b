"""Sums of pair terms over all pairs of inputs (i, j), in row blocks: the ReLU families'
E[S1] (diagonal) and E[S2] (all pairs) without forming any n×n matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._spec import NetSpec
from ._transfer import mp

PAIR_BLOCK_BYTES = 1 << 28  # memory of one block of ReLU pair terms (float64 arrays)
PROGRESS_PAIRS = 2 * 10**8  # pair-layer terms above which pair_sums shows a progress bar


@dataclass(frozen=True)
class PairSums:
    """Per layer (arrays of length L): total sums over all pairs (i, j) and diagonal sums of the
    network and label pair terms, and :math:`\\sum_i \\sqrt{\\text{net}_l(i,i)}`."""

    net_sum: np.ndarray
    net_trace: np.ndarray
    net_sqrt: np.ndarray
    lab_sum: np.ndarray
    lab_trace: np.ndarray

    def parts(self) -> dict:
        """E[S1] (diagonal sums) and E[S2] (total sums)."""
        return {"S1_net": mp(float(self.net_trace.sum())),
                "S2_net": mp(float(self.net_sum.sum())),
                "S1_label": mp(float(self.lab_trace.sum())),
                "S2_label": mp(float(self.lab_sum.sum()))}

    def split(self, k: int) -> tuple["PairSums", "PairSums"]:
        """(the first k layers, the rest): terms of two nets summed in one pass."""
        arrays = (self.net_sum, self.net_trace, self.net_sqrt, self.lab_sum, self.lab_trace)
        return PairSums(*(a[:k] for a in arrays)), PairSums(*(a[k:] for a in arrays))


def pair_block_rows(n: int, depth: int) -> int:
    """Rows i per block of pair terms (i, 1..n): the block's float64 arrays (about 6 per layer
    plus temporaries, each rows × n) stay under :data:`PAIR_BLOCK_BYTES`."""
    per_row = 8 * n * (6 * depth + 24)
    return int(max(1, min(n, PAIR_BLOCK_BYTES // per_row)))


def pair_sums(terms, spec: NetSpec, x, y, *, progress: bool = False, layers: int | None = None
              ) -> PairSums:
    """Sum the symmetric pair terms ``terms(spec, x, y, rows, cols)`` (per layer, rows × cols
    arrays) over all pairs (i, j): blocks of rows against the columns j ≥ the block's first
    row, off-block pairs counted twice. O(n²·d) time (half the pairs evaluated),
    O(block·n·L) memory; never the n×n matrices.

    ``layers``: how many arrays ``terms`` returns (default ``spec.depth``). ``progress``: a
    tqdm bar on stderr when the run is long (> :data:`PROGRESS_PAIRS` pair-layer terms) and
    stderr is a terminal."""
    n, L = x.shape[0], spec.depth if layers is None else layers
    block = pair_block_rows(n, L)
    out = [np.zeros(L) for _ in range(5)]
    bar = None
    if progress and n * n * L > PROGRESS_PAIRS:
        from tqdm.auto import tqdm
        bar = tqdm(total=n * (n + 1) // 2, desc=f"pair sums ({L} layers)", unit="pair",
                   unit_scale=True, disable=None, leave=False)
    try:
        for start in range(0, n, block):
            stop = min(n, start + block)
            b = stop - start
            net, lab = terms(spec, x, y, slice(start, stop), slice(start, n))
            r = np.arange(b)
            for l in range(L):
                for k, arr in ((0, net[l]), (3, lab[l])):
                    out[k][l] += arr[:, :b].sum() + 2.0 * arr[:, b:].sum()
                    dg = arr[r, r]
                    out[k + 1][l] += dg.sum()
                    if k == 0:
                        out[2][l] += np.sqrt(np.maximum(dg, 0.0)).sum()
            del net, lab
            if bar is not None:
                bar.update(b * (n - start) - b * (b - 1) // 2)
    finally:
        if bar is not None:
            bar.close()
    return PairSums(*out)
