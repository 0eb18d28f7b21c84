"""The design space of an integer depthwise convolution (NHWC, one filter per channel), as a
MetaSchedule custom schedule rule.

MetaSchedule's generic multi-level tiling never vectorizes the accumulation of a depthwise
convolution: it tiles the channels like any spatial axis and leaves the multiply-accumulate
scalar (8-21 GMAC/s on mobilenet_v2, no better than the plain loops). This rule builds what
XNNPACK's depthwise microkernels do, in TIR:

* the channels innermost, as one vector of ``lanes`` int32 accumulators (a power of two from 8
  to 64 that divides the channel count; on AVX-512 LLVM makes it ``vpmovsxbd`` + ``vpmulld`` +
  ``vpaddd``, XNNPACK's "mul32" kernels);
* a register tile of up to 4x4 output pixels around it, the KxK window unrolled, so each weight
  vector is loaded once per tile and the accumulators stay in registers (a ``local`` buffer);
* the requantization fused per tile, straight from the accumulators;
* the zero-point padding computed per tile row, for the input rows that row of tiles reads (no
  padded copy of the whole input, and no second parallel region);
* the tile rows across the thread pool, or none of it in parallel: small layers lose more to the
  pool's fork and join than they gain (a 3x3x96 layer on 6x6 pixels: 1.2 us serial against 2-4 us
  parallel at 2 threads on a 2-vCPU Zen 4).

``lanes`` and the parallel choice make the sketches this rule returns; the tile's rows and
columns are sampled (``sample_perfect_tile``), so MetaSchedule's mutators vary them. The search
measures the points and keeps the fastest, like any other task's. On the built-in model's largest
depthwise layer (48x48x16, 2 threads) the best of 96 trials ran 7.9 us, where the generic space's
best after 32 trials ran 17.9 us and the plain loops 44 us.

A depthwise convolution on a depthwise intrinsic (:func:`tvmq.int8.kernels_linear.depthwise_taps_te`,
four taps per channel packed into one word: ``vpdpbusd`` on VNNI) gets the same register tiles, with
the channels at the intrinsic's width: the packed words of a tile are computed per tile (its rows and
column pairs, vectorized over the channels), and the accumulation is tensorized with the intrinsic.
On a 2-vCPU Zen 4 (2 threads, best of a grid of tiles, one-op kernels) that ran 1.3-1.4x faster than
the ``vpmulld`` form on the stride-1 layers of mobilenet_v2 (e.g. 14x14x576: 23.8 -> 18.0 us); on its
stride-2 layers, where a packed word serves one output column instead of two, 1.04-1.25x within the
tuned model (one thread).

The int8 lowering asks for this rule by annotating the accumulation block
(``schedule_rule = DEPTHWISE_RULE``, MetaSchedule's own hook for custom rules: its ``ApplyCustomRule``
then applies this function to that block, and the default rules leave it alone).
"""

from __future__ import annotations

import tvm_ffi

from tvmq.int8.kernels_linear import DEPTHWISE_INTRIN, TAPS_BLOCK
from tvmq.int8.params import DEPTHWISE_RULE

from .rules import SERIAL_ANNOTATION

LANE_CHOICES = (8, 16, 32, 64)  # int32 lanes per vector (widths of 24 and 48 ran 2-4x slower)
MAX_TILE = 4  # output rows, and columns, per register tile at most
PAD_BLOCK = "pad_zp"  # the int8 kernels' zero-point padding (tvmq.int8.kernels_linear)
# bytes per vector of the padding's copy: one 512-bit register. Vectorized across all the channels
# of a row (576 of mobilenet_v2), LLVM took 3-3.5 s to emit a candidate's object code where 0.1 s
# was usual: the depthwise tasks of a uint8 model spent 37 s per round of 16 candidates, not 5.
MAX_PAD_VECTOR = 64


def lane_choices(channels: int) -> list[int]:
    """Vector widths (int32 lanes) that divide ``channels``: the widest three, or the channel
    count itself where none does (fewer than 8 channels, or an odd count)."""
    fits = [v for v in LANE_CHOICES if channels % v == 0]
    return fits[-3:] if fits else [channels]


def _at_most(sch, loop, width: int):
    """``loop``, or the inner loop of a split of it into the widest divisor of its extent that is
    at most ``width`` (a power of two; the loop as it is where none but 1 divides)."""
    extent = int(sch.get(loop).extent)
    factor = next(f for f in (width >> k for k in range(width.bit_length())) if extent % f == 0)
    if factor == extent or factor == 1:
        return loop
    return sch.split(loop, [None, factor])[1]


def _schedule(sch, block, lanes: int, parallel: bool):
    """One sketch: ``sch`` (a copy) with the accumulation ``block`` tiled, vectorized and unrolled;
    the rows and columns per register tile are sampled (MetaSchedule mutates them)."""
    b, i, j, o, rh, rw = sch.get_loops(block)
    rows = sch.sample_perfect_tile(i, n=2, max_innermost_factor=MAX_TILE)
    cols = sch.sample_perfect_tile(j, n=2, max_innermost_factor=MAX_TILE)
    io, ii = sch.split(i, rows)
    jo, ji = sch.split(j, cols)
    oo, oi = sch.split(o, [None, lanes])
    sch.reorder(b, io, jo, oo, rh, rw, ii, ji, oi)
    outer = sch.fuse(b, io)
    # unit loops kept (preserve_unit_loops): MetaSchedule replays this trace with other sampled tiles,
    # and every get_loops must then return as many loops as it did here
    consumers = sch.get_consumers(block)
    if len(consumers) == 1:
        sch.reverse_compute_at(consumers[0], oo, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(consumers[0])[-1])
        sch.set_scope(block, 0, "local")
    for loop in (ii, ji, rw, rh):
        sch.unroll(loop)
    sch.vectorize(oi)
    for producer in sch.get_producers(block):  # the zero-point padding: the rows a tile of rows reads
        if not sch.get(producer).name_hint.startswith(PAD_BLOCK):
            continue  # anything else fused before the convolution: MetaSchedule's rules place it
        sch.compute_at(producer, outer, preserve_unit_loops=True)
        sch.vectorize(_at_most(sch, sch.get_loops(producer)[-1], MAX_PAD_VECTOR))
        sch.annotate(producer, "schedule_rule", "None")  # placed: MetaSchedule's rules leave it
    if parallel:
        sch.parallel(outer)
    else:  # an annotated loop is one MetaSchedule's parallelizing postprocessor leaves serial
        sch.annotate(outer, SERIAL_ANNOTATION, 1)
    return sch


def _schedule_taps(sch, block, intrin: str, lanes: int, parallel: bool, tiles=None):
    """One sketch of the packed-taps form: register tiles as in :func:`_schedule`, the packed words
    of each tile computed with it, the accumulation blockized for ``intrin`` (MetaSchedule's
    ``RewriteTensorize`` tensorizes it once the loops around it are parallel, vectorized and
    unrolled, as it does the tiles of ``MultiLevelTilingWithIntrin``)."""
    b, i, j, o, rh, rk = sch.get_loops(block)
    rows_at, cols_at = tiles or (None, None)  # ((outer, inner) rows, (outer, inner) columns): given, not sampled
    rows = sch.sample_perfect_tile(i, n=2, max_innermost_factor=MAX_TILE, decision=rows_at)
    cols = sch.sample_perfect_tile(j, n=2, max_innermost_factor=2 * MAX_TILE, decision=cols_at)
    io, ii = sch.split(i, rows)
    jo, ji = sch.split(j, cols)
    oo, oi = sch.split(o, [None, lanes])
    sch.reorder(b, io, jo, oo, rh, ii, ji, oi, rk)
    outer = sch.fuse(b, io)
    (consumer,) = sch.get_consumers(block)
    sch.reverse_compute_at(consumer, oo, preserve_unit_loops=True)
    sch.vectorize(sch.get_loops(consumer)[-1])
    sch.set_scope(block, 0, "local")
    for producer in sch.get_producers(block):
        if sch.get(producer).name_hint == TAPS_BLOCK:
            sch.compute_at(producer, oo, preserve_unit_loops=True)
            *_, pairs, channels = sch.get_loops(producer)
            sch.vectorize(channels)
            # annotated, the column pairs stay out of the vector: MetaSchedule's vectorizing postprocessor
            # fuses plain loops into it, and a vector across pairs reads the input as a gather
            sch.annotate(pairs, SERIAL_ANNOTATION, 1)
            sch.annotate(producer, "schedule_rule", "None")
    for loop in (ii, ji, rh):
        sch.unroll(loop)
    tile = sch.blockize(oi, preserve_unit_iters=True)
    sch.annotate(tile, "meta_schedule.auto_tensorize", intrin)
    if parallel:
        sch.parallel(outer)
    else:
        sch.annotate(outer, SERIAL_ANNOTATION, 1)
    return sch


def depthwise_sketches(sch, block) -> list:
    """The sketches of a depthwise accumulation block: one per (lanes, parallel) choice."""
    from tvm.s_tir.schedule import ScheduleError

    loops = sch.get_loops(block)
    if len(loops) != 6:  # (b, i, j, o, rh, rw): anything else is not the kernel this rule knows
        return [sch]
    intrin = sch.get(block).annotations.get(DEPTHWISE_INTRIN)
    if intrin is not None:
        from tvmq.int8.intrin import DEPTHWISE_LANES

        choices = [(DEPTHWISE_LANES[str(intrin)], parallel) for parallel in (True, False)]
    else:
        choices = [(lanes, parallel) for lanes in lane_choices(int(sch.get(loops[3]).extent))
                   for parallel in (True, False)]
    out = []
    for lanes, parallel in choices:
        try:
            if intrin is not None:
                out.append(_schedule_taps(sch.copy(), block, str(intrin), lanes, parallel))
            else:
                out.append(_schedule(sch.copy(), block, lanes, parallel))
        except ScheduleError:
            pass
    return out or [sch]


TARGET_KEYS = ("cpu", "arm_cpu")  # MetaSchedule looks the rule up under each key of the target
for _key in TARGET_KEYS:
    tvm_ffi.register_global_func(f"s_tir.meta_schedule.{_key}.{DEPTHWISE_RULE}", depthwise_sketches, override=True)


__all__ = ["DEPTHWISE_RULE", "LANE_CHOICES", "MAX_TILE", "depthwise_sketches", "lane_choices"]
