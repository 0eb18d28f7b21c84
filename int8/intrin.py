"""int8 dot-product tensor intrinsics, registered with TVM under ``tvmq_dot_*`` names.

Every intrinsic computes one tile of an integer matrix product,

    C[i] += sum_k int32(A[k]) * int32(B(i, k))        i < lanes (output channels), k < 4

(``C[i] += sum_k (int32(A[k]) + 128) * int32(B(i, k))`` for an intrinsic with an activation
offset, below) where ``A`` is four consecutive input channels of one activation pixel (broadcast
to all lanes)
and ``B`` holds the matching weights of ``lanes`` output channels, packed at compile time in the
order the instruction reads them:

* layout ``"row"``: ``B[i, k]``, four bytes per output channel (what ``vpdpbusd``,
  ``vpmaddubsw`` and Arm ``sdot``/``udot`` read);
* layout ``"pair"`` (and ``"pairzp"``, the same with the zero points as two more operands
  ``ZA[0]``, ``ZB[0]``, for uint8 models whose weights have a zero point):
  ``B[k // 2, i, k % 2]``: first the (k0, k1) pairs of all ``lanes`` channels,
  then the (k2, k3) pairs, so that one sign extension gives the int16 pairs ``vpmaddwd`` reads.
  The activation side is the same four channels seen as ``A[k // 2, k % 2]``: MetaSchedule's
  auto-tensorization wants plain iteration variables as the description's buffer indices.

=============================  ==  ==  =====  =================================================
name                           A   B   lanes  instructions
=============================  ==  ==  =====  =================================================
``tvmq_dot_avx2_u8i8_sat``     u8  i8  8      ``vpmaddubsw`` + ``vpmaddwd`` (ones) + add
``tvmq_dot_avx2_u8i8``         u8  i8  8      ``vpmovsxbw`` + 2x ``vpmaddwd`` + add
``tvmq_dot_avx2_i8i8``         i8  i8  8      same, activation sign-extended
``tvmq_dot_avx2_u8u8_zp``      u8  u8  8      ``(x - zp_x) * (w - zp_w)`` in int16, 2x ``vpmaddwd``
``tvmq_dot_avx512_u8i8_sat``   u8  i8  16     as ``avx2_u8i8_sat`` on zmm registers
``tvmq_dot_avx512_u8i8``       u8  i8  16     as ``avx2_u8i8`` on zmm registers
``tvmq_dot_avx512_i8i8``       i8  i8  16     as ``avx2_i8i8`` on zmm registers
``tvmq_dot_avx512_u8u8_zp``    u8  u8  16     as ``avx2_u8u8_zp`` on zmm registers
``tvmq_dot_vnni_u8i8``         u8  i8  16     ``vpdpbusd``
``tvmq_dot_vnni_i8i8``         i8  i8  16     ``vpdpbusd`` on ``A xor 0x80`` (= ``A + 128`` as u8)
``tvmq_dot_vnni_i8u8``         i8  u8  16     ``vpdpbusd`` with its operands swapped
``tvmq_dot_sdot_i8i8``         i8  i8  4      Arm ``sdot``
``tvmq_dot_udot_u8u8``         u8  u8  4      Arm ``udot``
=============================  ==  ==  =====  =================================================

``*_sat`` use ``vpmaddubsw``, which adds each pair of u8 x i8 products into int16 **with
saturation**: exact only when ``|a0*b0 + a1*b1| <= 32767`` for every pair a layer can see.
:func:`tvmq.int8.dot.pairs_fit_int16` checks that on the weights at compile time; a layer
that could saturate gets the exact ``vpmaddwd`` form instead (XNNPACK's AVX2 kernels make the
same choice). ``vpdpbusd``, ``sdot`` and ``udot`` sum four products into 32 bits, exactly.

``tvmq_dot_vnni_i8i8`` is XNNPACK's way with signed activations on VNNI: ``vpdpbusd`` wants its
unsigned operand on one side, so the int8 activation is flipped to ``A + 128`` (one ``vpxor`` of
the broadcast word) and multiplied by the int8 weights as they are. Its *activation offset* (128)
is part of its description, so the accumulator it computes is ``dot(A, B) + 128 * sum(B)``: a
per-channel constant the lowering folds into the bias (:mod:`.dot`). The alternative,
``tvmq_dot_vnni_i8u8``, puts the weights on the unsigned side (``w + 128``) and needs the
activation's window sum at run time: a kernel of its own before every layer.

TVM 0.27's own ``dot_16x4_vnni`` does not compile with its LLVM 22 (``vpdpbusd.512`` takes
``<64 x i8>`` operands there), hence our VNNI intrinsics. The intrinsics are parsed from
TVMScript text rather than decorated functions: the decorator inspects the whole call stack,
which takes minutes in a process that has imported TensorFlow.

Depthwise convolutions have intrinsics of their own (:data:`DEPTHWISE`): one vector of channels
times one vector of weights, four taps per channel,

    C[i] += sum_k ((A[i] >> 8k) & 255) * int32(B[i, k])        i < lanes (channels), k < 4

(written as Relax lowers it: int64 loops, so the shift and the product promoted to int64) where
each int32 ``A[i]`` holds four unsigned bytes, the activation of channel ``i`` at four
consecutive input columns (packed by the depthwise kernel, :mod:`.kernels_linear`), and ``B`` the
matching weights. On VNNI that is one ``vpdpbusd`` on the packed word as it is; Arm's ``sdot`` reads
the bytes as signed, ``(((A[i] >> 8k) & 255) ^ 128) - 128`` (four channels per call).

Importing this module registers them all.
"""

from __future__ import annotations

import tvm
from tvm.s_tir import TensorIntrin

__all__ = ["DEPTHWISE", "DEPTHWISE_LANES", "DEPTHWISE_SIGNED", "INTRINSICS", "register_all"]

# name -> (A dtype, B dtype, lanes, layout, saturating, activation offset)
INTRINSICS: dict[str, tuple[str, str, int, str, bool, int]] = {}

_X86 = {8: ("llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd"),
        16: ("llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512")}

# ``I``: the bias the accumulators started from. The kernels initialize their accumulator with it
# (:mod:`.init_operand`), and MetaSchedule's decomposition of the reduction leaves that read on
# the block it tensorizes, so the descriptions declare it too; nothing reads it.
_BIAS = 'I: T.Buffer(({n},), "int32", offset_factor=1)'
_SIGNATURE = {
    "pairzp": ('A: T.Buffer((2, 2), "{a}", offset_factor=1), B: T.Buffer((2, {n}, 2), "{b}", offset_factor=1), '
               'ZA: T.Buffer((1,), "int32", offset_factor=1), ZB: T.Buffer((1,), "int32", offset_factor=1), '
               f'{_BIAS}, C: T.Buffer(({{n}},), "int32", offset_factor=1)'),
    "row": ('A: T.Buffer((4,), "{a}", offset_factor=1), B: T.Buffer(({n}, 4), "{b}", offset_factor=1), '
            f'{_BIAS}, C: T.Buffer(({{n}},), "int32", offset_factor=1)'),
    "pair": ('A: T.Buffer((2, 2), "{a}", offset_factor=1), B: T.Buffer((2, {n}, 2), "{b}", offset_factor=1), '
             f'{_BIAS}, C: T.Buffer(({{n}},), "int32", offset_factor=1)'),
}
# (in the order the workload block reads them: tensorize compares the read regions in order)
_READS = {"pairzp": "T.reads(C[0:{n}], A[0:2, 0:2], ZA[0:1], B[0:2, 0:{n}, 0:2], ZB[0:1], I[0:{n}])",
          "row": "T.reads(C[0:{n}], A[0:4], B[0:{n}, 0:4], I[0:{n}])",
          "pair": "T.reads(C[0:{n}], A[0:2, 0:2], B[0:2, 0:{n}, 0:2], I[0:{n}])"}

_DESC = {
    "pairzp": '''
    for i, p, q in T.grid({n}, 2, 2):
        with T.sblock("update"):
            vi, vp, vq = T.axis.remap("SRR", [i, p, q])
            T.reads(C[vi], A[vp, vq], ZA[0], B[vp, vi, vq], ZB[0], I[vi])
            T.writes(C[vi])
            C[vi] = C[vi] + (T.Cast("int32", A[vp, vq]) - ZA[0]) * (T.Cast("int32", B[vp, vi, vq]) - ZB[0])''',
    "row": '''
    for i, k in T.grid({n}, 4):
        with T.sblock("update"):
            vi, vk = T.axis.remap("SR", [i, k])
            T.reads(C[vi], A[vk], B[vi, vk], I[vi])
            T.writes(C[vi])
            C[vi] = C[vi] + {a_term} * T.Cast("int32", B[vi, vk])''',
    "pair": '''
    for i, p, q in T.grid({n}, 2, 2):
        with T.sblock("update"):
            vi, vp, vq = T.axis.remap("SRR", [i, p, q])
            T.reads(C[vi], A[vp, vq], B[vp, vi, vq], I[vi])
            T.writes(C[vi])
            C[vi] = C[vi] + T.Cast("int32", A[vp, vq]) * T.Cast("int32", B[vp, vi, vq])''',
}

# impl bodies ({n}: lanes, {n8} = 4n, {n16} = 2n)
_BROADCAST_A4 = 'T.reinterpret("{a}x{n8}", T.Broadcast(T.reinterpret("int32", A[T.Ramp(0, 1, 4)]), {n}))'
# the four int8 activations + 128, as uint8: each byte's sign bit flipped (0x80808080 as an int32)
_BROADCAST_A4_FLIPPED = ('T.reinterpret("uint8x{n8}", T.Broadcast(T.bitwise_xor(T.reinterpret("int32", '
                         'A[T.Ramp(0, 1, 4)]), T.int32(-2139062144)), {n}))')
_IMPL = {
    "maddubs": '''
    pairs = T.call_llvm_pure_intrin("int16x{n16}", "{maddubs}", ''' + _BROADCAST_A4 + ''', B[0, T.Ramp(0, 1, {n8})])
    C[T.Ramp(0, 1, {n})] = C[T.Ramp(0, 1, {n})] + T.call_llvm_pure_intrin(
        "int32x{n}", "{maddwd}", pairs, T.Broadcast(T.int16(1), {n16}))''',
    "maddwd": '''
    a01 = T.reinterpret("int16x{n16}", T.Broadcast(T.reinterpret("int32", T.Cast("int16x2", A[0, T.Ramp(0, 1, 2)])), {n}))
    a23 = T.reinterpret("int16x{n16}", T.Broadcast(T.reinterpret("int32", T.Cast("int16x2", A[1, T.Ramp(0, 1, 2)])), {n}))
    b01 = T.Cast("int16x{n16}", B[0, 0, T.Ramp(0, 1, {n16})])
    b23 = T.Cast("int16x{n16}", B[1, 0, T.Ramp(0, 1, {n16})])
    C[T.Ramp(0, 1, {n})] = C[T.Ramp(0, 1, {n})] + T.call_llvm_pure_intrin("int32x{n}", "{maddwd}", a01, b01) \\
        + T.call_llvm_pure_intrin("int32x{n}", "{maddwd}", a23, b23)''',
    # (x - zp_x) * (w - zp_w) of uint8 x and w: both widened to int16 (|values| <= 255), exact
    "maddwd_zp": '''
    za = T.Broadcast(T.Cast("int16", ZA[0]), 2)
    zb = T.Broadcast(T.Cast("int16", ZB[0]), {n16})
    a01 = T.reinterpret("int16x{n16}", T.Broadcast(T.reinterpret("int32", T.Cast("int16x2", A[0, T.Ramp(0, 1, 2)]) - za), {n}))
    a23 = T.reinterpret("int16x{n16}", T.Broadcast(T.reinterpret("int32", T.Cast("int16x2", A[1, T.Ramp(0, 1, 2)]) - za), {n}))
    b01 = T.Cast("int16x{n16}", B[0, 0, T.Ramp(0, 1, {n16})]) - zb
    b23 = T.Cast("int16x{n16}", B[1, 0, T.Ramp(0, 1, {n16})]) - zb
    C[T.Ramp(0, 1, {n})] = C[T.Ramp(0, 1, {n})] + T.call_llvm_pure_intrin("int32x{n}", "{maddwd}", a01, b01) \\
        + T.call_llvm_pure_intrin("int32x{n}", "{maddwd}", a23, b23)''',
    # vpdpbusd: unsigned bytes of its 2nd operand times signed bytes of its 3rd
    "vpdpbusd": '''
    C[T.Ramp(0, 1, 16)] = T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512",
        C[T.Ramp(0, 1, 16)], ''' + _BROADCAST_A4 + ''', B[0, T.Ramp(0, 1, 64)])''',
    "vpdpbusd_flipped": '''
    C[T.Ramp(0, 1, 16)] = T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512",
        C[T.Ramp(0, 1, 16)], ''' + _BROADCAST_A4_FLIPPED + ''', B[0, T.Ramp(0, 1, 64)])''',
    "vpdpbusd_swapped": '''
    C[T.Ramp(0, 1, 16)] = T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512",
        C[T.Ramp(0, 1, 16)], B[0, T.Ramp(0, 1, 64)], ''' + _BROADCAST_A4 + ''')''',
    "sdot": '''
    C[T.Ramp(0, 1, 4)] = T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8",
        C[T.Ramp(0, 1, 4)], ''' + _BROADCAST_A4 + ''', B[0, T.Ramp(0, 1, 16)])''',
    "udot": '''
    C[T.Ramp(0, 1, 4)] = T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.udot.v4i32.v16i8",
        C[T.Ramp(0, 1, 4)], ''' + _BROADCAST_A4 + ''', B[0, T.Ramp(0, 1, 16)])''',
}


class _Decorator:
    """Stands for ``T.prim_func(s_tir=True)`` when the parser evaluates the decorator line:
    the real one walks the call stack (slow), and the parser only needs its dispatch token."""

    dispatch_token = "tirx"

    @staticmethod
    def prim_func(**_kwargs):
        return _Decorator


def _parse(layout: str, body: str, fmt: dict) -> tvm.tirx.PrimFunc:
    from tvm.script.parser.core.entry import _default_globals, parse

    src = (f"@D.prim_func(s_tir=True)\n"
           f"def f({_SIGNATURE[layout]}):\n"
           f"    with T.sblock(\"root\"):\n        {_READS[layout]}\n        T.writes(C[0:{{n}}])")
    src = src + body.replace("\n", "\n    ")
    return parse(src.format(**fmt), extra_vars={**_default_globals(), "D": _Decorator})


def _register(name: str, a: str, b: str, lanes: int, layout: str, impl: str, saturating: bool = False,
              a_offset: int = 0) -> None:
    maddubs, maddwd = _X86.get(lanes, ("", ""))
    a_term = f'(T.Cast("int32", A[vk]) + {a_offset})' if a_offset else 'T.Cast("int32", A[vk])'
    fmt = dict(a=a, b=b, n=lanes, n8=4 * lanes, n16=2 * lanes, maddubs=maddubs, maddwd=maddwd, a_term=a_term)
    TensorIntrin.register(name, _parse(layout, _DESC[layout], fmt), _parse(layout, _IMPL[impl], fmt), override=True)
    INTRINSICS[name] = (a, b, lanes, layout, saturating, a_offset)


# scheme -> the depthwise intrinsic (four taps of packed unsigned bytes per channel, see the module docstring)
DEPTHWISE: dict[str, str] = {}
DEPTHWISE_LANES: dict[str, int] = {}  # intrinsic -> channels per call
DEPTHWISE_SIGNED: dict[str, bool] = {}  # intrinsic -> whether it reads the packed bytes as signed

# the accumulators are a local buffer (registers), as the depthwise rule sets them
_SIGNATURE["depthwise"] = ('A: T.Buffer(({n},), "int32", offset_factor=1), B: T.Buffer(({n}, 4), "int8", offset_factor=1), '
                           f'{_BIAS}, C: T.Buffer(({{n}},), "int32", offset_factor=1, scope="local")')
_READS["depthwise"] = "T.reads(C[0:{n}], A[0:{n}], B[0:{n}, 0:4], I[0:{n}])"
_DEPTHWISE_DESC = '''
    for i, k in T.grid(T.int64({n}), T.int64(4)):
        with T.sblock("update"):
            vi, vk = T.axis.remap("SR", [i, k])
            T.reads(C[vi], A[vi], B[vi, vk], I[vi])
            T.writes(C[vi])
            C[vi] = T.Cast("int32", T.Cast("int64", C[vi]) + {byte} * T.Cast("int64", T.Cast("int32", B[vi, vk])))'''
_BYTE = 'T.bitwise_and(T.shift_right(T.Cast("int64", A[vi]), vk * T.int64(8)), T.int64(255))'  # byte k of A
_SIGNED_BYTE = f"(T.bitwise_xor({_BYTE}, T.int64(128)) - T.int64(128))"  # the same byte as int8
_DEPTHWISE_IMPL = {
    "vpdpbusd": '''
    C[T.Ramp(0, 1, 16)] = T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512",
        C[T.Ramp(0, 1, 16)], T.reinterpret("uint8x64", A[T.Ramp(0, 1, 16)]), B[0, T.Ramp(0, 1, 64)])''',
    "sdot": '''
    C[T.Ramp(0, 1, 4)] = T.call_llvm_pure_intrin("int32x4", "llvm.aarch64.neon.sdot.v4i32.v16i8",
        C[T.Ramp(0, 1, 4)], T.reinterpret("int8x16", A[T.Ramp(0, 1, 4)]), B[0, T.Ramp(0, 1, 16)])''',
}


def _register_depthwise(scheme: str, name: str, lanes: int, impl: str, signed: bool = False) -> None:
    fmt = dict(n=lanes, byte=_SIGNED_BYTE if signed else _BYTE)
    TensorIntrin.register(name, _parse("depthwise", _DEPTHWISE_DESC, fmt),
                          _parse("depthwise", _DEPTHWISE_IMPL[impl], fmt), override=True)
    DEPTHWISE[scheme] = name
    DEPTHWISE_LANES[name] = lanes
    DEPTHWISE_SIGNED[name] = signed


def register_all() -> None:
    """Register every tvmq intrinsic (idempotent)."""
    if INTRINSICS:
        return
    for isa, lanes in (("avx2", 8), ("avx512", 16)):
        _register(f"tvmq_dot_{isa}_u8i8_sat", "uint8", "int8", lanes, "row", "maddubs", saturating=True)
        _register(f"tvmq_dot_{isa}_u8i8", "uint8", "int8", lanes, "pair", "maddwd")
        _register(f"tvmq_dot_{isa}_i8i8", "int8", "int8", lanes, "pair", "maddwd")
        _register(f"tvmq_dot_{isa}_u8u8_zp", "uint8", "uint8", lanes, "pairzp", "maddwd_zp")
    _register("tvmq_dot_vnni_u8i8", "uint8", "int8", 16, "row", "vpdpbusd")
    _register("tvmq_dot_vnni_i8i8", "int8", "int8", 16, "row", "vpdpbusd_flipped", a_offset=128)
    _register("tvmq_dot_vnni_i8u8", "int8", "uint8", 16, "row", "vpdpbusd_swapped")
    _register("tvmq_dot_sdot_i8i8", "int8", "int8", 4, "row", "sdot")
    _register("tvmq_dot_udot_u8u8", "uint8", "uint8", 4, "row", "udot")
    _register_depthwise("vnni", "tvmq_dwdot_vnni", 16, "vpdpbusd")
    _register_depthwise("sdot", "tvmq_dwdot_sdot", 4, "sdot", signed=True)
    DEPTHWISE["amx"] = DEPTHWISE["vnni"]  # AMX has no depthwise form: its VNNI kernels


register_all()
