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


def _heap_mb_after_a_large_block(env_value):
    # A 96 MB block (a fine Pnet's activation is 100-130 MB) lands in the heap only when malloc maps
    # nothing itself; with glibc's defaults it is mapped apart and the heap stays small.
    env = {**os.environ, "RPRLOC_KEEP_FREED_MEMORY": env_value}
    code = ("from rprloc_core.allocator import keep_freed_memory as k; k(); block = bytearray(96 << 20); "
            "import re; maps = open('/proc/self/maps').read().splitlines(); "
            "print(sum(int(b, 16) - int(a, 16) for a, b in (re.match(r'(\\w+)-(\\w+)', l).groups() "
            "for l in maps if l.endswith('[heap]'))) >> 20)")
    return int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout.split()[-1])


def test_blocks_above_the_mmap_threshold_come_from_the_kept_heap():
    assert _heap_mb_after_a_large_block("1") >= 96
    assert _heap_mb_after_a_large_block("0") < 96
