"""numerics.mc_moments to a stated precision (``rel_se=``), its caps, and ``--rel-se``."""

import json

import jax
import numpy as np
import pytest

import numerics
from numerics import check
from numerics._mc import MIN_SAMPLES_FOR_SE, STEPS_PER_CALL
from theory import NetSpec

SPEC = NetSpec(depth=3, widths=(6, 6), input_dim=3, activation="relu")


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 3)), rng.standard_normal((5, 1))


def test_rel_se_target_met_and_result_is_a_prefix_of_the_fixed_run(getkey):
    x, y = _data()
    key = getkey()
    with numerics.x64():
        res = numerics.mc_moments(SPEC, x, y, key=key, rel_se=0.04, chunk=8)
        block = len(jax.local_devices()) * 8 * STEPS_PER_CALL
        assert res.stop_reason == "rel_se" and res.target_rel_se == 0.04
        assert res.S1_rel_se < 0.04 and res.S2_rel_se < 0.04
        assert res.samples >= MIN_SAMPLES_FOR_SE and res.samples % block == 0
        # one block fewer would not have met the target (or not had MIN_SAMPLES_FOR_SE nets)
        prev = res.samples - block
        s1, s2 = res.S1_samples[:prev], res.S2_samples[:prev]
        rel = lambda a: a.std(ddof=1) / np.sqrt(a.size) / abs(a.mean())
        assert prev < MIN_SAMPLES_FOR_SE or max(rel(s1), rel(s2)) >= 0.04
        fixed = numerics.mc_moments(SPEC, x, y, key=key, samples=res.samples, chunk=8)
    assert fixed.stop_reason == "samples"
    np.testing.assert_array_equal(res.S1_samples, fixed.S1_samples)  # same networks
    np.testing.assert_array_equal(res.S2_samples, fixed.S2_samples)
    d = res.to_dict()
    assert d["mc_stop_reason"] == "rel_se" and d["mc_samples"] == res.samples
    json.dumps(d)


def test_caps_stop_it_and_say_so(getkey):
    x, y = _data()
    with numerics.x64():  # the executable of the test above (same spec, chunk and dtype)
        res = numerics.mc_moments(SPEC, x, y, key=getkey(), rel_se=1e-6, samples=300, chunk=8)
        assert res.stop_reason == "max_samples" and res.samples == 300
        assert res.S1_rel_se > 1e-6
        res = numerics.mc_moments(SPEC, x, y, key=getkey(), rel_se=1e-6, max_seconds=1e-9,
                                  chunk=8)
    assert res.stop_reason == "max_seconds"
    assert res.samples == len(jax.local_devices()) * 8 * STEPS_PER_CALL  # one block


@pytest.mark.parametrize("kwargs,message", [
    ({}, "give samples"),
    ({"rel_se": 0.0}, "rel_se must be a positive number"),
    ({"rel_se": float("nan")}, "rel_se must be a positive number"),
    ({"rel_se": 0.1, "max_seconds": -1.0}, "max_seconds must be a positive number"),
    ({"samples": 2.5}, "samples must be a positive integer"),
])
def test_bad_precision_options(kwargs, message, getkey):
    x, y = _data()
    with pytest.raises(ValueError, match=message):
        numerics.mc_moments(SPEC, x, y, key=getkey(), **kwargs)


SMALL = ["--depth", "3", "--width", "6", "--n", "5", "--input-dim", "3"]


def test_cli_rel_se(capsys):
    assert check.main(SMALL + ["--rel-se", "0.05", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mc_stop_reason"] == "rel_se" and out["mc_S1_rel_se"] < 0.05
    assert check.main(SMALL + ["--rel-se", "0.001", "--samples", "300"]) == 0
    assert "stopped by: the --samples cap" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--rel-se", "0"], ["--rel-se", "nan"],
                                  ["--max-seconds", "-2"]])
def test_cli_bad_rel_se_one_line_exit_2(argv, capsys):
    err_code = check.main(SMALL + argv)
    assert err_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
