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
    """``(model cut so that every operator output is a graph output, those tensor indices, the
    model's graph)``. The cut keeps every operator and tensor where they were (each operator writes
    a wanted tensor), so the graph read from ``model`` describes the cut one too."""
    from tvmq.model.cut import cut, read_graph

    graph = read_graph(model.content)
    order = graph.operator_outputs()
    content = cut(model.content, order)
    return replace(model, content=content, sha256=hashlib.sha256(content).hexdigest(), _model=None), order, graph


def explain(prepared: Prepared, target, view, untuned: str, threads: int, feed: Inputs, policy: VerificationPolicy,
            steps: Steps, failing: str | None = None) -> Mismatch:
    """Compare every tensor of ``prepared``'s model, built as the run built it (its lowering, the
    ``target``, schedules from ``view``, ``untuned`` as :func:`~.compile.build`), with the TFLite
    kernels ``policy`` names (on ``threads`` threads), on the input named ``failing`` (else the
    first input)."""
    from tvmq.model import Reference
    from tvmq.tuner.compile import Runnable

    model, order, graph = every_tensor_model(prepared.model)
    sample = next((s for s in feed.samples if s.name == failing), feed.samples[0])
    tflite = Reference(prepared.model, threads, kernels=policy.kernels, content=model.content)
    with steps.step("explain", f"compare all {len(order)} tensors with {tflite.name}"):
        quiet = Steps.quiet()
        again = prepare(model, prepared.info, prepared.profile, prepared.codegen, quiet)
        executable = build(lower(again, target, quiet), view, untuned, quiet)
        ours = Runnable(executable).run(sample.arrays)
        theirs = tflite.run(sample.arrays)
    tensors = compare_tensors(graph.tensors, order, ours, theirs, policy.tolerance)
    mismatch = Mismatch(sample.name, tflite.name, tensors)
    first = mismatch.first
    if first is not None and first.op_index >= 0:
        op = graph.operators[first.op_index]
        agreed = {t.tensor for t in tensors if t.agrees}
        reads = []
        for i in op.inputs:
            if i < 0:
                continue
            info = graph.tensors[i]
            role = "agrees" if i in agreed else ("a model input" if i in graph.inputs else "a constant")
            reads.append(f"tensor {i} {info.name!r} {list(info.shape)} {info.dtype} ({info.quantization}): {role}")
        mismatch = replace(mismatch, inputs=reads)
    for line in mismatch.lines():
        steps.print(line)
    return mismatch


__all__ = ["every_tensor_model", "explain"]
