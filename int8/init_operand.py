"""Reductions that start from an operand: a TE kernel's accumulator initialized with its bias.

TE cannot say it: ``te.create_prim_func`` drops the ``init`` of ``te.sum``, so every reduction
starts from zero and the bias is added after it, once per output, inside the requantization. On
the int8 kernels that add is a vector instruction of each output vector's epilogue, which is a
large share of a 1x1 convolution with few input channels (MobileNet V2's 112x112x16 -> 96
expansion runs 4 dot products per output vector of 16 channels, and 9 epilogue instructions).

A TE kernel marks its reduction block with ``attrs={INIT_FROM: i}``, ``i`` the position of a
1-d operand among its inputs; :func:`init_from_operands` then rewrites the generated PrimFunc so
that the block's ``init`` stores ``operand[o]``, ``o`` the block's last spatial index (the
output channel), in place of zero.

The operand is added to the block's read regions: a buffer the block reads without declaring it
enters the block's structural hash by identity, so the same kernel lowered twice would be two
workloads under MetaSchedule's anchor-block equality, and a database would never find its records
again. MetaSchedule's decomposition of the reduction keeps that read on the block it tensorizes,
so tvmq's intrinsics declare it as well (:mod:`.intrin`).
"""

from __future__ import annotations

from tvm import ir, s_tir, tirx

__all__ = ["INIT_FROM", "init_from_operands"]

INIT_FROM = "tvmq_init_from"


def _with_init(block: s_tir.SBlock, body, operand) -> s_tir.SBlock:
    """``block`` with ``body``, and, given an ``operand``, its init storing ``operand[o]`` (``o`` the
    init's last index, the output channel) and that read declared."""
    init, reads, annotations = block.init, block.reads, block.annotations
    if operand is not None:
        assert isinstance(init, tirx.BufferStore), f"block {block.name_hint}: init is not one store"
        channel = init.indices[-1]
        init = tirx.BufferStore(init.buffer, tirx.BufferLoad(operand, [channel]).astype(init.buffer.dtype),
                                init.indices)
        reads = [*reads, tirx.BufferRegion(operand, [ir.Range.from_min_extent(channel, 1)])]
        annotations = {k: v for k, v in annotations.items() if k != INIT_FROM}
    return s_tir.SBlock(block.iter_vars, reads, block.writes, block.name_hint, body, init,
                        block.alloc_buffers, block.match_buffers, annotations)


def _rewrite(stmt, operands):
    if isinstance(stmt, s_tir.SBlockRealize):
        block = stmt.block
        body = _rewrite(block.body, operands)
        mark = block.annotations.get(INIT_FROM)
        if body.same_as(block.body) and mark is None:
            return stmt
        block = _with_init(block, body, None if mark is None else operands[int(mark)])
        return s_tir.SBlockRealize(stmt.iter_values, stmt.predicate, block)
    if isinstance(stmt, tirx.For):
        body = _rewrite(stmt.body, operands)
        if body.same_as(stmt.body):
            return stmt
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, body, stmt.thread_binding, stmt.annotations)
    if isinstance(stmt, tirx.SeqStmt):
        seq = [_rewrite(s, operands) for s in stmt.seq]
        if all(a.same_as(b) for a, b in zip(seq, stmt.seq)):
            return stmt
        return tirx.SeqStmt(seq)
    return stmt


def init_from_operands(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` (from ``te.create_prim_func``) with each block annotated ``INIT_FROM = i``
    initialized from its ``i``-th parameter at the block's output channel."""
    operands = list(func.params)  # a PrimFunc's parameters are its buffers
    body = _rewrite(func.body, operands)
    return func if body.same_as(func.body) else func.with_body(body)
