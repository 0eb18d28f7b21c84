"""The partition stage: a model with operators TVM cannot import is split (:mod:`tvmq.model.partition`)
instead of refused; what follows compiles TVM's part, and verifies and times the whole."""

from __future__ import annotations

from dataclasses import dataclass

from tvmq.errors import UnsupportedOperators
from tvmq.model import LoadedModel, ModelInfo

from .steps import Steps

__all__ = ["Split", "split"]


@dataclass(frozen=True)
class Split:
    """``tvm_model``: what TVM compiles (the model, or its TVM part); ``checked_model``: what the run
    feeds, verifies against TFLite and times (the model, or the model cut to the outputs the parts
    compute when its last part cannot run anywhere); ``partition``: None for a model TVM takes whole."""

    source: LoadedModel  # the model as loaded
    tvm_model: LoadedModel
    tvm_info: ModelInfo
    checked_model: LoadedModel
    checked_info: ModelInfo
    partition: object | None = None  # tvmq.model.partition.Partition

    @property
    def source_sha256(self) -> str:
        """The sha256 of the model as the user has it (what a build records it was made from)."""
        return self.source.sha256

    def runnable(self, tvm_runnable, threads: int):
        """The build as the whole model runs: ``tvm_runnable`` itself, or with the TFLite parts."""
        if self.partition is None:
            return tvm_runnable
        from tvmq.tuner.partitioned import PartitionedRunnable

        p = self.partition
        return PartitionedRunnable(tvm_runnable, p.parts, p.inputs, p.outputs, threads, self.checked_model.where)

    def artifact_parts(self) -> dict | None:
        """What the exported build records of the partition (:func:`tvmq.tuner.artifact.export`)."""
        if self.partition is None:
            return None
        p = self.partition
        return {"inputs": list(p.inputs), "outputs": list(p.outputs), "parts": p.parts}


def _cannot_import(info: ModelInfo) -> set[str]:
    return ({f"CUSTOM:{c}" for c in info.custom_operators}
            | {u.removesuffix(" (quantized)") for u in info.unsupported_operators})


def _litert_refuses(content: bytes) -> str | None:
    import hashlib

    from tvmq.model.reference import litert_refusal

    refusal = litert_refusal(content, hashlib.sha256(content).hexdigest())
    if refusal is None:
        return None
    return refusal.reason or f"the interpreter died of {refusal.died_of}"


def _loaded(model: LoadedModel, content: bytes) -> LoadedModel:
    import hashlib

    return LoadedModel(path=model.path, content=content, sha256=hashlib.sha256(content).hexdigest(),
                       source=model.source)


def split(model: LoadedModel, info: ModelInfo, steps: Steps) -> Split:
    """The model whole when TVM imports every operator; else its partition, shown. Refused (one
    line, exit 2) when it is dynamic-range quantized, when no operator is left for TVM, or when the
    operators before TVM's part cannot run in TFLite either."""
    from tvmq.model import check_convertible, inspect_model
    from tvmq.model.cut import cut
    from tvmq.model.partition import TFLITE, NothingForTvm, plan_partition

    unsupported = _cannot_import(info)
    if info.dynamic_range_operators or not unsupported:
        check_convertible(info)
        return Split(model, model, info, model, info)
    with steps.step("partition", f"partition around {', '.join(sorted(unsupported))}"):
        try:
            partition = plan_partition(model.content, unsupported, _litert_refuses)
        except NothingForTvm:
            try:
                check_convertible(info)  # the refusal that names them, with its kind (custom-operators...)
            except UnsupportedOperators as refusal:
                raise type(refusal)(f"{refusal}, and no operator is left for TVM around them",
                                    refusal.operators) from None
            raise
        tvm_model = _loaded(model, partition.tvm_part.content)
        tvm_info = inspect_model(tvm_model)
        check_convertible(tvm_info)
        checked_model, checked_info = model, info
        if partition.not_computed:
            checked_model = _loaded(model, cut(model.content, partition.outputs))
            checked_info = inspect_model(checked_model)
    tflite_ops = {k: v for p in partition.parts if p.engine == TFLITE for k, v in p.operators.items()}
    steps.print(f"partition: TVM runs {sum(partition.tvm_part.operators.values())} operators "
                f"({100 * partition.tvm_mac_share():.1f}% of the MACs), TFLite "
                + (", ".join(f"{k}×{v}" for k, v in tflite_ops.items()) or "nothing"))
    if partition.not_computed:
        steps.print(f"not computed (no interpreter here runs the operators after TVM's part: {partition.dropped}): "
                    + ", ".join(partition.name(t) for t in partition.not_computed))
    return Split(model, tvm_model, tvm_info, checked_model, checked_info, partition)
