"""The stage behind ``--explain-mismatch``: the model again, with every operator's output as a
graph output, built with the run's own lowering, schedules and target, run here and in the
verification's TFLite kernels on the first input that failed (else the first input), and compared
tensor by tensor (:mod:`tvmq.report.mismatch`)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from tvmq.report.mismatch import Mismatch, compare_tensors
from tvmq.report.verify import VerificationPolicy

from .compile import Prepared, build, lower, prepare
from .source import Inputs
from .steps import Steps


def every_tensor_model(model):
    """``(model cut so that every operator output is a graph output, those tensor indices)``."""
    from tvmq.model.cut import cut, operator_outputs

    order = operator_outputs(model.content)
    content = cut(model.content, order)
    return replace(model, content=content, sha256=hashlib.sha256(content).hexdigest(), _model=None), order


def explain(prepared: Prepared, target, view, untuned: str, reference, feed: Inputs, policy: VerificationPolicy,
            steps: Steps, failing: str | None = None) -> Mismatch:
    """Compare every tensor of ``prepared``'s model, built as the run built it (its lowering, the
    ``target``, schedules from ``view``, ``untuned`` as :func:`~.compile.build`), with
    ``reference``'s kernels, on the input named ``failing`` (else the first input)."""
    from tvmq.model import Reference
    from tvmq.model.cut import operators, tensor_infos
    from tvmq.tuner.compile import Runnable

    model, order = every_tensor_model(prepared.model)
    sample = next((s for s in feed.samples if s.name == failing), feed.samples[0])
    with steps.step("explain", f"compare all {len(order)} tensors with {reference.name}"):
        quiet = Steps.quiet()
        again = prepare(model, prepared.info, prepared.profile, prepared.codegen, quiet)
        executable = build(lower(again, target, quiet), view, untuned, quiet)
        ours = Runnable(executable).run(sample.arrays)
        tflite = Reference(prepared.model, reference.num_threads, kernels=reference.kernels, content=model.content)
        theirs = tflite.run(sample.arrays)
    infos = tensor_infos(model.content)
    tensors = compare_tensors(infos, order, ours, theirs, policy.exact, policy.tolerance)
    mismatch = Mismatch(sample.name, reference.name, tensors)
    first = mismatch.first
    if first is not None and first.op_index >= 0:
        op = operators(model.content)[first.op_index]
        agreed = {t.tensor for t in tensors if t.agrees}
        reads = []
        for i in op.inputs:
            if i < 0:
                continue
            info = infos[i]
            role = "agrees" if i in agreed else ("a constant" if info.producer is None and i not in _graph_inputs(model)
                                                 else "a model input")
            reads.append(f"tensor {i} {info.name!r} {list(info.shape)} {info.dtype} ({info.quantization}): {role}")
        mismatch = replace(mismatch, inputs=reads)
    for line in mismatch.lines():
        steps.print(line)
    return mismatch


def _graph_inputs(model) -> set[int]:
    graph = model.tflite_model.Subgraphs(0)
    return {int(graph.Inputs(i)) for i in range(graph.InputsLength())}


__all__ = ["every_tensor_model", "explain"]
