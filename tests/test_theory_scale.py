"""Full data sets: invariants without the n×n Gram matrix, ReLU pair sums in row blocks, and the
bad inputs a new user meets (all-zero rows, absurd depths, memory errors)."""

import numpy as np
import pytest

import theory._pair_sums as B
from theory import Invariants, NetSpec, expected_moments

from .test_theory_cli import refused

REL = 1e-12  # float64 sums of the same terms in another order


def _gram_invariants(x, y):
    """The definitions, through the n×n Gram matrix (small n only)."""
    G, YY = x @ x.T, y @ y.T
    sq = np.diag(G)
    return dict(X4=np.sum(sq * sq), X2=np.sum(sq) ** 2, F=np.sum(G * G),
                Yd=np.sum(np.diag(YY) * sq), Yo=np.sum(YY * G))


@pytest.mark.parametrize("n,d,c", [(40, 7, 3), (5, 9, 2), (30, 30, 1)])
def test_invariants_without_gram_match_definitions(n, d, c, rng):
    x = rng.standard_normal((n, d)) + 0.3
    y = rng.standard_normal((n, c))
    inv = Invariants.of(x, y)
    for k, v in _gram_invariants(x, y).items():
        assert getattr(inv, k) == pytest.approx(v, rel=REL), k


SPECS = [
    NetSpec.uniform(2, 7, 5, outputs=2, activation="relu"),
    NetSpec.uniform(4, 6, 5, outputs=2, activation="relu"),
    NetSpec.uniform(5, 6, 5, outputs=2, activation="relu", arch="residual"),
]


@pytest.mark.parametrize("spec", SPECS, ids=["relu2", "relu4-pair-chain", "relu5-residual"])
def test_pair_sums_do_not_depend_on_the_block_size(spec, rng, monkeypatch):
    """One row per block (many blocks, ragged last one) gives the one-block result."""
    x = rng.standard_normal((23, 5))
    x[3] = x[7]  # a repeated input: an angle of exactly 0 off the diagonal
    y = rng.standard_normal((23, 2))
    whole = expected_moments(spec, x, y)
    assert B.pair_block_rows(23, spec.depth + 2) == 23
    for size in (1, 4):
        monkeypatch.setattr(B, "pair_block_rows", lambda n, depth, size=size: size)
        part = expected_moments(spec, x, y)
        assert float(part.expected_S1 / whole.expected_S1) == pytest.approx(1, abs=REL)
        assert float(part.expected_S2 / whole.expected_S2) == pytest.approx(1, abs=REL)
        assert part.limit_batch_size_bound == pytest.approx(whole.limit_batch_size_bound,
                                                            rel=REL)


def test_block_memory_is_bounded():
    """Rows per block × n × (6 L + 24) float64 stays under PAIR_BLOCK_BYTES (at least 1 row)."""
    for n, L in [(100_000, 2), (20_000, 8), (128, 10_000), (10, 3)]:
        rows = B.pair_block_rows(n, L)
        assert 1 <= rows <= n
        assert rows == 1 or rows * 8 * n * (6 * L + 24) <= B.PAIR_BLOCK_BYTES


@pytest.mark.parametrize("args,needle", [
    (["--depth", "1000000000"], "exceeds the supported maximum"),
    (["--depth", "100001", "--activation", "relu"], "exceeds the supported maximum"),
])
def test_absurd_depth_refused_at_once(args, needle, capsys):
    assert needle in refused(capsys, *args)


def test_all_zero_rows_one_line_error(tmp_path, capsys):
    path = tmp_path / "zero.npz"
    np.savez(path, x=np.zeros((8, 3)), y=np.ones(8))
    for act in ("linear", "relu"):
        line = refused(capsys, "--depth", "3", "--width", "4", "--activation", act, "--data",
                       str(path))
        assert "every input row is zero" in line
    with pytest.raises(ValueError, match="every input row is zero"):
        expected_moments(NetSpec.uniform(2, 4, 3), np.zeros((8, 3)), np.ones((8, 1)))


def test_memory_error_is_one_line(monkeypatch, capsys):
    def boom(*args, **kwargs):
        raise MemoryError
    monkeypatch.setattr("theory._registry.pair_sums", boom)
    line = refused(capsys, "--depth", "2", "--width", "4", "--activation", "relu",
                   "--no-same-budget")
    assert line.startswith("error: out of memory") and "ReLU pair sums" in line
    # a linear net never blames the ReLU pair sums
    monkeypatch.setattr("theory._invariants.Invariants._of", boom)
    line = refused(capsys, "--depth", "2", "--width", "4", "--no-same-budget")
    assert line.startswith("error: out of memory") and "ReLU" not in line
