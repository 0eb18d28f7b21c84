"""tuner.tensor_intrinsics: TVM's tensor intrinsics registered, inspect.stack() unchanged."""

from __future__ import annotations

import subprocess
import sys

_CHILD = r"""
import inspect, json, sys

def frames():
    return [(f.filename, f.function, f.code_context) for f in inspect.stack()]

# frames from importlib and from exec'd code, as TVMScript sees them while the package imports
before = eval(compile("frames()", "<string>", "eval"))
from tvmq.tuner.tensor_intrinsics import import_tensor_intrinsics
import_tensor_intrinsics()
after = eval(compile("frames()", "<string>", "eval"))
from tvm.s_tir import TensorIntrin
print(json.dumps({"same_stack": before == after, "frames": len(after),
                  "vnni": TensorIntrin.get("dot_16x4_vnni", allow_missing=True) is not None,
                  "imported": "tvm.s_tir.tensor_intrin" in sys.modules}))
"""


def test_intrinsics_registered_and_stack_unchanged():
    import json

    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] and result["vnni"]
    assert result["same_stack"] and result["frames"] >= 2
