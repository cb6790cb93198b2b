"""The README's quick start: exactly two commands, and CI runs the second one verbatim."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_start_two_commands_and_ci_runs_the_test_command():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "experiments.reproduce" in commands[0] and "pytest" in commands[1]
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert commands[1] in ci


def test_public_jax_api_only():
    """The code must run on jax 0.10 and 0.11: no ``jax.core`` or ``jax._src`` names (the
    internals whose removal broke other libraries on new jax)."""
    bad = re.compile(r"\bjax\.(core|_src)\b|from jax(\.core| import core)\b")
    hits = []
    for part in ("theory", "numerics", "experiments"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, part)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    with open(path) as f:
                        for no, line in enumerate(f, 1):
                            if bad.search(line):
                                hits.append(f"{os.path.relpath(path, ROOT)}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits)
