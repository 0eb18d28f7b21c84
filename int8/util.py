"""Small debugging helpers for comparing the integer path with TFLite layer outputs."""

from __future__ import annotations

import tvm
from tvm import relax


def _find_logits(var2val):
    logits = None
    for var, val in var2val.items():
        if isinstance(val, relax.Call) and isinstance(val.op, tvm.ir.Op) and val.op.name == "relax.nn.softmax":
            src = var2val.get(val.args[0])
            if isinstance(src, relax.Call) and src.op.name == "relax.dequantize":
                logits = src.args[0]
            else:
                logits = val.args[0]
    if logits is None:
        raise ValueError("no softmax in the function")
    return logits


def return_pre_softmax(mod: tvm.IRModule, func_name: str = "main", new_name: str | None = None) -> tvm.IRModule:
    """Make ``func_name`` return the quantized tensor that feeds its last ``nn.softmax``
    (the logits), instead of the softmax output.

    TVM runs the softmax in float on the QDQ path while TFLite uses its integer (LUT) softmax,
    so comparing logits isolates the integer layers.  Raises ``ValueError`` without a softmax.
    With ``new_name`` the truncated copy is *added* under that name and ``func_name`` is kept
    (one compile gives both entry points).
    """
    func = mod[func_name]
    if new_name is not None:
        # the added function needs its own vars (a var may be bound in one function only)
        from tvm.relax.utils import copy_with_new_vars

        func = copy_with_new_vars(func)
    params = list(func.params)
    var2val = relax.analysis.get_var2val(func)
    logits = _find_logits(var2val)
    bb = relax.BlockBuilder()
    with bb.function(new_name or func_name, params):
        with bb.dataflow():
            for block in func.body.blocks:
                for binding in block.bindings:
                    bb.emit_normalized(binding)
                    if binding.var.same_as(logits):
                        break
                else:
                    continue
                break
            out = bb.emit_output(logits)
        bb.emit_func_output(out)
    new_func = bb.get()[new_name or func_name]
    if new_name is None:
        funcs = {gv: f for gv, f in mod.functions_items() if gv.name_hint != func_name}
        funcs[mod.get_global_var(func_name)] = new_func
    else:
        funcs = dict(mod.functions_items())
        funcs[tvm.ir.GlobalVar(new_name)] = new_func
    new = tvm.IRModule(funcs, attrs=mod.attrs)
    return relax.transform.DeadCodeElimination()(new)
