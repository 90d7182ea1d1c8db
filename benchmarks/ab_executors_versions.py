"""A/B of two versions of genbench: `genbench run --workers 2` of the default grid (built-in
measures only) with an older commit's code against this checkout's, alternating, 3 rounds.

The older code lives in an environment of its own that sees this checkout's packages but not its
editable genbench (run from outside the repository, so that the current folder is not on the path):

    git archive COMMIT | tar -x -C /tmp/oldsrc
    python -m venv --without-pip /tmp/oldenv
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/oldenv/lib/python3.11/site-packages/zz_main.pth
    .venv/bin/python -m pip --python /tmp/oldenv/bin/python install --no-deps --no-build-isolation --no-index /tmp/oldsrc
    cd /tmp && /work/main/.venv/bin/python /work/main/benchmarks/ab_executors_versions.py
"""
import os
import statistics
import subprocess
import tempfile
import time

ways = {"old": "/tmp/oldenv/bin/genbench", "new": "/work/main/.venv/bin/genbench"}
times = {k: [] for k in ways}
for round_ in range(3):
    for name in (("old", "new") if round_ % 2 == 0 else ("new", "old")):
        store = tempfile.mkdtemp(prefix=f"ab-{name}-")
        env = {**os.environ, "GENBENCH_LOAD_PLUGINS": ""}
        started = time.perf_counter()
        done = subprocess.run([ways[name], "run", "--store", store, "--format", "csv", "--workers", "2"], env=env, capture_output=True, text=True, cwd="/tmp")
        seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stderr[-1500:]
        times[name].append(seconds)
        print(f"round {round_ + 1} {name}: {seconds:.1f} s, load {os.getloadavg()[0]:.2f}", flush=True)
for name, values in times.items():
    print(f"{name}: median {statistics.median(values):.1f} s, min {min(values):.1f}, max {max(values):.1f}")
