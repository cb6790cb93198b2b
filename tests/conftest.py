"""Strict test harness: warnings are errors (pyproject), strict jax promotion, seeded keys.

The random seed of the ``getkey`` fixture is ``WD_TEST_SEED`` (default 0) and is shown in the
pytest header, so any failure can be reproduced.
"""

import os

import pytest

SEED = int(os.environ.get("WD_TEST_SEED", "0"))


def pytest_report_header(config):
    return f"widthdepth test seed: WD_TEST_SEED={SEED}"


@pytest.fixture(autouse=True, scope="session")
def _strict_jax():
    """Rank promotion raises and dtype promotion is strict, for every test that uses jax."""
    try:
        import jax
    except ImportError:  # pragma: no cover
        yield
        return
    old_rank = jax.config.jax_numpy_rank_promotion
    old_dtype = jax.config.jax_numpy_dtype_promotion
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    try:
        yield
    finally:
        jax.config.update("jax_numpy_rank_promotion", old_rank)
        jax.config.update("jax_numpy_dtype_promotion", old_dtype)


@pytest.fixture
def getkey():
    """Returns a function giving a fresh PRNG key on each call, from the session seed."""
    import jax

    state = {"key": jax.random.key(SEED)}

    def _next():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _next


@pytest.fixture
def rng():
    """A numpy Generator seeded from the session seed."""
    import numpy as np

    return np.random.default_rng(SEED)
