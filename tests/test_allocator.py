"""Keeping freed memory in a training process (rprloc_core/allocator.py): on, off by the
environment, and once per process. Each case runs in a fresh interpreter, as the setting is
process-wide."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")


def _applied(env_value):
    env = {k: v for k, v in os.environ.items() if k != "RPRLOC_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["RPRLOC_KEEP_FREED_MEMORY"] = env_value
    code = "from rprloc_core.allocator import keep_freed_memory as k; print(k(), k())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


def test_freed_memory_is_kept_unless_the_environment_says_no():
    assert _applied(None) == ["True", "True"]
    assert _applied("1") == ["True", "True"]
    assert _applied("0") == ["False", "False"]
