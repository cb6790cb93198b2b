"""``_ghost_norms.sq_norms``: every leaf's S2 sum, with small leaves packed into blocked
reductions, against numpy in float64, across the pack limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numerics import _ghost_norms
from numerics._testing import TOL

F32 = TOL[np.dtype("float32")]["roundoff"]  # float32 sums of ≤ 2^16 squares, other order


def _leaves(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in sizes]


@pytest.mark.parametrize("sizes, limits", [
    # around one block; an empty leaf; one leaf above PACK_LEAF (its own product)
    ((1, 127, 128, 129, 0, 300, (1 << 16) + 1), {}),
    # more leaves than PACK_LEAVES allows in one pack: several packs, a last pack of one
    ((5,) * 7, {"PACK_LEAVES": 3}),
    # PACK_TOTAL closes a pack; a leaf alone between two large ones
    ((100, 200, 130, 10_000, 3, 10_000, 7, 8), {"PACK_TOTAL": 512, "PACK_LEAF": 600}),
    # shaped leaves (a matrix, a conv kernel, a scalar)
    (((3, 4), (2, 3, 3, 5), ()), {}),
])
def test_sq_norms_match_numpy_across_pack_limits(sizes, limits, monkeypatch):
    for name, value in limits.items():
        monkeypatch.setattr(_ghost_norms, name, value)
    gs = _leaves(sizes)
    got = jax.jit(_ghost_norms.sq_norms)([jnp.asarray(g) for g in gs])
    want = [np.sum(g.astype(np.float64) ** 2) for g in gs]
    assert len(got) == len(gs)
    for g, s, w in zip(gs, got, want):
        assert s.shape == () and s.dtype == g.dtype
        np.testing.assert_allclose(float(s), w, rtol=F32, atol=1e-30)


def test_packs_follow_the_limits(monkeypatch):
    monkeypatch.setattr(_ghost_norms, "PACK_LEAVES", 2)
    monkeypatch.setattr(_ghost_norms, "PACK_TOTAL", 256)
    monkeypatch.setattr(_ghost_norms, "PACK_LEAF", 1000)
    # 2000 is too large; 200 + 100 pad to 256 + 128 > 256: a new pack; groups of one dropped
    assert _ghost_norms._packs([1, 2, 2000, 3, 200, 100, 50]) == [[0, 1], [5, 6]]
    assert _ghost_norms._packs([]) == []


def test_mixed_dtypes_pack_by_dtype():
    """Leaves of two dtypes are packed per dtype (no promotion: strict mode holds), each sum
    in its leaf's dtype."""
    gs = [jnp.full((200,), 0.5, jnp.bfloat16), jnp.arange(10, dtype=jnp.float32),
          jnp.full((3,), 2.0, jnp.bfloat16), jnp.ones((4, 4), jnp.float32)]
    got = _ghost_norms.sq_norms(gs)
    assert [s.dtype for s in got] == [g.dtype for g in gs]
    assert [float(s) for s in got] == [50.0, 285.0, 12.0, 16.0]  # exact in both dtypes
