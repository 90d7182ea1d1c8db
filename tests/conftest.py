from __future__ import annotations

import re

import pytest
import torch

from genbench.schemas import TrainConfig

torch.set_num_threads(2)

#: A fast recipe for tests: digits MLPs fit every labeling within a few hundred steps.
FAST_TRAIN = TrainConfig(lr=0.1, schedule="constant", max_steps=3_000)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module of small tensor operations: on a few shared
    cores, OpenMP threads waiting on each other made them many times slower (about 20× for
    the Inception model tests). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _builtins_only():
    """genbench's own suite sees the built-in components only, whatever plugins are installed
    beside it (``make venv`` installs those under plugins/), from the first fixture on: a
    module-scoped fixture that evaluates every registered measure must not meet them either."""
    import genbench.plugins

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENBENCH_LOAD_PLUGINS", "")
        genbench.plugins.reset_plugins()
        yield
    genbench.plugins.reset_plugins()


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store"


@pytest.fixture(autouse=True)
def _no_ambient_store(monkeypatch, tmp_path):
    """Tests never write ./genbench-results: the default store lives in tmp_path."""
    monkeypatch.setenv("GENBENCH_STORE", str(tmp_path / "default-store"))
    monkeypatch.delenv("GENBENCH_RAISE_ERRORS", raising=False)


#: The names of the plugin modules tests write into tmp_path ("gbtest_…", "gbproto_…"): a test
#: that loads plugins of its own forgets them afterwards.
TEST_PLUGIN_MODULE = re.compile(r"^gb[a-z]+_")


@pytest.fixture
def plugin_sandbox(monkeypatch):
    """For a test that loads plugins of its own: no plugin environment variables (every entry
    point it passes loads), a fresh plugin set before and after, and the test plugin modules it
    imported forgotten afterwards."""
    import sys

    import genbench.plugins

    for variable in ("GENBENCH_LOAD_PLUGINS", "GENBENCH_STRICT_PLUGINS", "GENBENCH_RAISE_ERRORS"):
        monkeypatch.delenv(variable, raising=False)
    genbench.plugins.reset_plugins()
    before = set(sys.modules)
    yield
    genbench.plugins.reset_plugins()
    for name in set(sys.modules) - before:
        if TEST_PLUGIN_MODULE.match(name):
            del sys.modules[name]
