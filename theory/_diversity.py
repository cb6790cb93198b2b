r"""Gradient diversity, the batch-size bound and the estimator variants users meet (README,
"Definitions and conventions").

All functions are plain arithmetic on their arguments, so they accept Python numbers,
``Fraction``, sympy expressions, numpy arrays and jax arrays alike (numerics/ calls them on jax
arrays inside ``jit``). With per-example gradients :math:`g_i`, :math:`i = 1..n`:

.. math::

    S_1 = \sum_i \lVert g_i\rVert^2,\qquad S_2 = \Big\lVert \sum_i g_i \Big\rVert^2,\qquad
    \Delta = S_1/S_2,\qquad B_S = n\Delta .

Example:
    >>> stats = diversity(S1=12.0, S2=3.0, n=4)
    >>> stats["batch_size_bound"], stats["B_simple"]
    (16.0, 15.0)
"""

from __future__ import annotations


def batch_size_bound(S1, S2, n):
    r""":math:`B_S = n S_1 / S_2` (Yin et al. 2018).

    ``S2 = 0`` (the summed gradient vanishes) makes it undefined: a ValueError for Python
    numbers; numpy and jax arrays follow IEEE arithmetic (inf or nan).
    """
    try:
        return n * S1 / S2
    except ZeroDivisionError:
        raise ValueError(f"S2 = ||sum_i g_i||^2 = 0 (S1 = {S1}, n = {n}): the summed gradient "
                         f"vanishes, so B_S = n*S1/S2 is undefined") from None


def check_delta(delta) -> None:
    """Refuse (ValueError) a delta of ``m_max = delta*B_S + 1`` that is not a positive finite
    number (symbolic deltas pass)."""
    try:
        ok = 0 < float(delta) < float("inf")
    except TypeError:  # a sympy symbol or another non-numeric expression
        return
    if not ok:
        raise ValueError(f"delta must be a positive number, got {delta}")


def simple_noise_scale(S1, S2, n):
    r"""McCandlish et al.'s :math:`B_\text{simple} = \operatorname{tr}\Sigma/|G|^2` with
    :math:`G = \tfrac1n\sum g_i` and :math:`\Sigma` the per-example covariance (divide by n).

    Equals :math:`B_S - 1` exactly: :math:`\operatorname{tr}\Sigma = S_1/n - S_2/n^2`,
    :math:`|G|^2 = S_2/n^2`.
    """
    return (S1 / n - S2 / (n * n)) / (S2 / (n * n))


def unbiased_noise_scale(S1, S2, n):
    r"""McCandlish's two-batch unbiased estimator with batch sizes 1 and n:
    :math:`(n\Delta - 1)/(1 - \Delta)`; negative when :math:`\Delta > 1`."""
    delta = S1 / S2
    return (n * delta - 1) / (1 - delta)


def norm_test_theta2(S1, S2, n):
    r"""Byrd et al. (2012) norm-test statistic :math:`\theta^2 = (n\Delta - 1)/(n - 1)`."""
    return (n * S1 / S2 - 1) / (n - 1)


def minibatch_second_moment(S1, S2, n, m):
    r""":math:`E\lVert\sum_{j \in \text{batch}} g_j\rVert^2` for m indices drawn uniformly with
    replacement: :math:`(m/n) S_1 (1 + (m-1)/B_S)`."""
    return (m / n) * S1 * (1 + (m - 1) / batch_size_bound(S1, S2, n))


def predicted_max_batch(bound, delta=1):
    r"""Largest batch keeping the second moment within :math:`(1+\delta)` of linear scaling:
    :math:`m_\max = \delta B_S + 1`; ``delta`` must be positive (ValueError)."""
    check_delta(delta)
    return delta * bound + 1


def diversity(S1, S2, n) -> dict:
    """All named statistics (README, "Definitions and conventions") from :math:`S_1, S_2, n`
    (each under its own key)."""
    return {
        "S1": S1,
        "S2": S2,
        "gradient_diversity": S1 / S2,
        "batch_size_bound": batch_size_bound(S1, S2, n),
        "B_simple": simple_noise_scale(S1, S2, n),
        "B_simple_unbiased": unbiased_noise_scale(S1, S2, n),
        "norm_test_theta2": norm_test_theta2(S1, S2, n),
    }
