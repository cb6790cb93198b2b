import pytest
"""numerics.mc_moments under jax.distributed: two CPU processes on loopback (gloo collectives)
give exactly the single-process result for the same key."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = textwrap.dedent("""
    import json, sys
    import jax
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    if pid >= 0:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                   process_id=pid)
    import numpy as np
    import numerics
    from theory import NetSpec
    spec = NetSpec(depth=3, widths=(6, 5), input_dim=4, activation="relu")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((7, 4)), rng.standard_normal((7, 1))
    with numerics.x64():
        r = numerics.mc_moments(spec, x, y, key=jax.random.key(3), samples=21, chunk=2)
    print(json.dumps({"procs": jax.process_count(), "S1": r.S1_samples.tolist(),
                      "S2": r.S2_samples.tolist(), "running": r.running["S1"]}))
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(pid, port):
    return subprocess.Popen([sys.executable, "-c", WORKER, str(pid), str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})


def _last_json(text):
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow  # 17 s: two processes under jax.distributed; run with -m slow
def test_two_processes_equal_one():
    single = _run(-1, 0)
    out1, err1 = single.communicate(timeout=240)
    assert single.returncode == 0, err1
    port = _free_port()
    workers = [_run(pid, port) for pid in (0, 1)]
    outs = [w.communicate(timeout=240) for w in workers]
    for w, (_, err) in zip(workers, outs):
        assert w.returncode == 0, err
    ref = _last_json(out1)
    for out, _ in outs:
        got = _last_json(out)
        assert got["procs"] == 2
        # same networks (fold_in(key, i)), same arithmetic: identical up to float64 round-off
        np.testing.assert_allclose(got["S1"], ref["S1"], rtol=1e-12)
        np.testing.assert_allclose(got["S2"], ref["S2"], rtol=1e-12)
        np.testing.assert_allclose(got["running"], ref["running"], rtol=1e-12)
