"""Pointwise convolutions on Intel AMX: a GEMM kernel on tile registers, its requantization fused.

A 1x1 convolution of stride 1 without padding is a matrix product ``(M, K) x (K, N)`` of the
activation seen as ``M = H * W`` rows of ``K`` channels (a free reshape of NHWC) and the weights.
On AMX (Sapphire / Emerald Rapids, ``amx-int8``) one ``tdpbssd`` (int8 x int8) or ``tdpbusd``
(uint8 x int8) multiplies a 16 x ``kc`` tile of bytes by a ``kc`` x 16 tile of weights into 16 x 16
int32 accumulators: ``16 * 16 * kc`` multiply-accumulates, up to 16,384, per instruction, where a
``vpdpbusd`` does 64. The lowering gives it the layers :func:`fits` accepts (those that reduce more
than they write; the others stay on VNNI). This module builds that product as one TIR function
per layer:

* the weights are packed at compile time exactly as for VNNI (:func:`tvmq.int8.dot.pack`, "row"
  layout, 16 lanes): for each 16 output channels, ``K/4`` rows of 16 x 4 bytes, which is the tile
  layout ``tdpbssd`` reads for its second operand;
* each job computes 32 rows x 32 channels (two activation tiles, two weight tiles, four
  accumulator tiles: the 2x2 register blocking of the eight tile registers), or 32 x 16 where the
  layer has 16 output channels; the last job of each axis is moved back so that it ends at the
  edge (it recomputes a few rows or channels another job writes with the same values) instead of
  reading past the activation;
* ``kc`` is the largest multiple of 4 up to 64 that divides ``K`` (a tile row holds 64 bytes);
* the accumulator tiles start from the bias (a tile load of stride 0 repeats its 16 channels on
  every row), go to a 32 x 32 int32 scratch in cache after the last chunk of K, and the requantization
  (:func:`tvmq.int8.kernels_linear.epilogue_expr`, the same expression as every other kernel, so
  the result is bit for bit the same) runs on it vectorized per job, 16 channels at a time down
  the 32 rows, their requantization constants held in registers;
* the jobs run across TVM's thread pool; each job loads the tile configuration (it is per thread).

AMX state must be granted to a process before its first tile instruction (Linux
``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``); every kernel asks for it itself, once per
call, so a library runs in any process that loads it (tvmq-run, MetaSchedule's runners, an RPC
server) without help.

The function is scheduled by hand (``tirx.is_scheduled``): its blocking is fixed by the tile
registers, so there is nothing for MetaSchedule to search, and tuning leaves it out. The numpy
reference is :func:`reference` (the plain integer product), beside the kernel as in :mod:`.requant`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dot import DotChoice, weight_shift
from .params import Requantization

__all__ = ["AmxParams", "INSTRUCTIONS", "amx_gemm_func", "choose", "chunk", "fits", "reference"]

INSTRUCTIONS = {"int8": "tdpbssd", "uint8": "tdpbusd"}  # activation dtype -> AMX instruction (weights int8)
INTRIN = {"int8": "tvmq_amx_i8i8", "uint8": "tvmq_amx_u8i8"}  # names in intrinsic counts and reports
MIN_ROWS = 32  # two 16-row activation tiles per job
MIN_DEPTH = 192  # input channels at least (:func:`fits`)
# parallel tasks per kernel at most: each loads the tile configuration once and runs its share of
# the jobs (a configuration and a release per job of 32 x 32 outputs made the 112x112 16->96
# layer of mobilenet_v2 2.5x slower)
MAX_CHUNKS = 64
ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 158, 0x1023, 18  # x86-64 Linux


@dataclass(frozen=True)
class AmxParams:
    """One layer's product: ``rows`` x ``k`` activation, ``n`` output channels (``n_padded`` in the
    packed weights), ``cw`` times the row sum added when nonzero (:mod:`.dot`), and the dtypes of
    the per-channel requantization vectors passed after it."""

    rows: int
    k: int
    n: int
    a_dtype: str
    cw: int
    tens_dtypes: tuple[str, ...]

    @property
    def n_padded(self) -> int:
        return self.n + (-self.n % 16)


def chunk(k: int) -> int:
    """Bytes of K per tile row: the largest multiple of 4 up to 64 that divides ``k``."""
    return next(c for c in range(64, 0, -4) if k % c == 0)


def fits(rows: int, k: int, n: int) -> bool:
    """Whether a product of ``rows`` x ``k`` into ``n`` channels runs on the kernel: at least two
    tiles of rows, whole 4-byte groups of K (the activation is read in place, never padded), and a
    layer that reduces more than it writes (``k >= MIN_DEPTH`` and ``k >= n``).

    The last condition is measured (tf2_mobilenet_v2 ptq, one-op layers at 2 threads on a 2-vCPU
    Emerald Rapids, against the tuned VNNI kernels): the AMX kernel won or tied on every layer of
    192 input channels or more that narrows (e.g. 14x14x576->96: 30.7 us against 36.4 us), and lost
    on the expanding ones and those of fewer channels (112x112x16->96: 343 us against 159 us),
    whose time goes to requantizing and writing their outputs, where the tile unit adds a store
    and a reload of every accumulator."""
    return rows >= MIN_ROWS and k % 4 == 0 and k >= MIN_DEPTH and k >= n


def choose(a_dtype: str, w: np.ndarray, zp_w: int) -> DotChoice | None:
    """Int8 weights ``B = w - shift`` for the kernel (``w``: ``(..., K, OC)``): ``shift = zp_w``
    where ``w - zp_w`` fits int8 (then ``cw == 0``), else 128 for uint8 weights and 0 for int8
    ones, with the row sum's coefficient ``cw = shift - zp_w``."""
    if a_dtype not in INSTRUCTIONS:
        return None
    shift = weight_shift(w.astype(np.int64), str(w.dtype), zp_w, "int8")
    return DotChoice(INTRIN[a_dtype], a_dtype, "int8", 16, "row", shift, shift - int(zp_w))


def reference(x: np.ndarray, b: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The int32 accumulator the kernel requantizes: ``x @ b + bias`` (``x``: ``(M, K)``,
    ``b``: ``(K, N)``), exact in int64 and returned as int32."""
    return (x.astype(np.int64) @ b.astype(np.int64) + bias.astype(np.int64)).astype(np.int32)


_I = " " * 4


def _call(name: str, *args) -> str:
    return f'T.evaluate(T.call_llvm_intrin("void", "llvm.x86.{name}"{"".join(", " + a for a in args)}))'


def _source(p: AmxParams, out_dtype: str) -> str:
    m, k, n, np_ = p.rows, p.k, p.n, p.n_padded
    nt = 2 if np_ >= 32 else 1  # weight tiles per job
    nw = 16 * nt  # output channels per job
    kc = chunk(k)
    jobs_n = -(-np_ // nw)
    jobs = -(-m // MIN_ROWS) * jobs_n
    chunks = min(jobs, MAX_CHUNKS)
    lanes = next(g for g in (16, 8, 4, 2, 1) if n % g == 0)  # the epilogue's vector width
    dp = INSTRUCTIONS[p.a_dtype]
    tens = "".join(f'T{i}: T.Buffer(({n},), "{d}"), ' for i, d in enumerate(p.tens_dtypes))
    rowsum = f'S: T.Buffer(({m},), "int32"), ' if p.cw else ""
    # tile configuration (palette 1): bytes per row at 16 + 2t, rows at 48 + t; tiles 0-3 the
    # accumulators (16 x 16 int32), 4-5 the activation (16 x kc bytes), 6-7 the weights (kc/4 x 64)
    shapes = [(64, 16)] * 4 + [(kc, 16)] * 2 + [(64, kc // 4)] * 2
    cfg = [f"cfg[{i}] = T.uint8(0)" for i in range(64)] + ["cfg[0] = T.uint8(1)"]
    cfg += [f"cfg[{16 + 2 * t}] = T.uint8({c})" for t, (c, _) in enumerate(shapes)]
    cfg += [f"cfg[{48 + t}] = T.uint8({r})" for t, (_, r) in enumerate(shapes)]
    def compute(job: str, mv: str, nv: str, level: int) -> list[str]:
        """The tile work of one job: its corner, the accumulators started from the bias (each tile
        row loaded from the same 16 channels: stride 0), the chunks of K multiplied in."""
        at = _I * level
        lines = [f"{at}{mv} = T.min({job} // {jobs_n} * 32, {m - 32})",
                 f"{at}{nv} = T.min({job} % {jobs_n} * {nw}, {np_ - nw})"]
        lines += [at + _call("tileloadd64", f"T.int8({2 * t + r})", f'I.access_ptr("r", offset={nv} + {16 * t})',
                             "T.int64(0)") for t in range(nt) for r in range(2)]
        lines.append(f"{at}for kb in range({k // kc}):")
        lines += [at + _I + _call("tileloadd64", f"T.int8({4 + r})",
                                  f'X.access_ptr("r", offset=({mv} + {16 * r}) * {k} + kb * {kc})', f"T.int64({k})")
                  for r in range(2)]
        lines += [at + _I + _call("tileloadd64", f"T.int8({6 + t})",
                                  f'W.access_ptr("r", offset=(({nv} // 16 + {t}) * {k // 4} + kb * {kc // 4}) * 64)',
                                  "T.int64(64)") for t in range(nt)]
        lines += [at + _I + _call(dp, f"T.int8({2 * t + r})", f"T.int8({4 + r})", f"T.int8({6 + t})")
                  for t in range(nt) for r in range(2)]
        return lines

    store = [_call("tilestored64", f"T.int8({2 * t + r})", f'acc.access_ptr("w", offset={16 * r * nw + 16 * t})',
                   f"T.int64({nw * 4})") for t in range(nt) for r in range(2)]
    load_cfg = _call("ldtilecfg", 'cfg.access_ptr("r")')
    o = f"n0 + v * {lanes} + l"
    value = f"acc[mi, v * {lanes} + l]" + (f" + S[m0 + mi] * {p.cw}" if p.cw else "")
    tens_args = "".join(f", T{i}" for i in range(len(p.tens_dtypes)))
    first, last = f"c * {jobs} // {chunks}", f"(c + 1) * {jobs} // {chunks}"
    body = "\n".join([
        f'@T.prim_func(s_tir=True, private=True, check_well_formed=False)',
        f'def f(X: T.Buffer(({m}, {k}), "{p.a_dtype}"), W: T.Buffer(({np_ // 16}, {k // 4}, 16, 4), "int8"), '
        f'I: T.Buffer(({np_},), "int32"), {rowsum}{tens}Y: T.Buffer(({m}, {n}), "{out_dtype}")):',
        f'{_I}T.func_attr({{"tirx.is_scheduled": True, "tirx.noalias": True, "op_pattern": 8}})',
        f'{_I}with T.sblock("root"):',
        f'{_I * 2}T.evaluate(T.call_extern("int64", "syscall", T.int64({ARCH_PRCTL}), T.int64({ARCH_REQ_XCOMP_PERM}), '
        f'T.int64({XFEATURE_XTILEDATA})))',
        f'{_I * 2}for c in T.parallel({chunks}):',
        f'{_I * 3}cfg = T.decl_buffer((64,), "uint8", scope="local")',
        f'{_I * 3}acc = T.decl_buffer((32, {nw}), "int32", scope="local")',
        *(f"{_I * 3}{c}" for c in cfg),
        f'{_I * 3}{load_cfg}',
        f'{_I * 3}for job in range({first}, {last}):',
        *compute("job", "m0", "n0", 4),
        *(f"{_I * 4}{s}" for s in store),
        f'{_I * 4}for v in range({nw // lanes}):',
        f'{_I * 5}if n0 + v * {lanes} < {n}:',
        f'{_I * 6}for mi in range(32):',
        f'{_I * 7}for l in T.vectorized({lanes}):',
        f'{_I * 8}Y[m0 + mi, {o}] = EPI({value}, {o}{tens_args})',
        f'{_I * 3}{_call("tilerelease")}',
    ])
    return body


def amx_gemm_func(p: AmxParams, epi: Requantization):
    """The kernel of one layer as a PrimFunc ``(X, W, I, [S], *tens, Y)``: ``X`` the activation
    ``(rows, k)``, ``W`` the packed weights, ``I`` the bias each accumulator starts from (padded
    to ``n_padded``), ``S`` the activation's row sums when ``cw != 0``, then the requantization
    vectors; ``Y`` the requantized output ``(rows, n)``."""
    from tvm.script.parser.core.entry import _default_globals, parse

    from .kernels_linear import epilogue_expr

    def requantize(acc, o, *tens):
        return epilogue_expr(acc, o, epi, tens)

    return parse(_source(p, epi.dtype), extra_vars={**_default_globals(), "EPI": requantize})
