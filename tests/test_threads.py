"""TVM's thread pool as tvmq sizes it (:func:`tvmq.tuner.compile.set_threads`)."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import os, sys
os.environ.pop("TVM_NUM_THREADS", None); os.environ.pop("OMP_NUM_THREADS", None)
import tvm
from tvmq.tuner.compile import set_threads
for n, most in {calls}:
    set_threads(n, most=most)
    print(os.environ["TVM_NUM_THREADS"], tvm.get_global_func("runtime.NumThreads")())
"""


def _probe(calls) -> list[tuple[str, int]]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(calls=calls)], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split("\n")
    return [(env, int(n)) for env, n in (line.split() for line in out if line)]


def test_set_threads_sizes_the_pool_even_where_tvm_would_take_one_thread():
    # Unset, TVM 0.27 on x86 takes half the logical cores (1 on a 2-vCPU host) and runs parallel
    # loops inline; the variable set first gives the pool its threads.
    assert _probe([(2, None)]) == [("2", 2)]


def test_a_scaling_run_declares_its_largest_count_first():
    # the pool is created at its first use with the count then set and cannot grow later
    assert _probe([(1, 4), (2, 4), (4, 4)]) == [("4", 1), ("4", 2), ("4", 4)]
    assert _probe([(1, None), (2, None)]) == [("1", 1), ("2", 1)]  # what the old loop got: one thread
