"""TFLite's integer UNIDIRECTIONAL_SEQUENCE_LSTM (8-bit activations and weights, a 16-bit cell
state: ``lstm_eval.cc``'s ``EvalInteger8x8_16``), as a numpy reference and a TIR kernel per time
step, bit for bit what LiteRT computes.

Each step, for each gate ``g`` (input, forget, cell, output)::

    pre_g = sat16(MBQM(W_rec_g h + b_rec_g) + sat16(MBQM(W_in_g x + b_in_g)))   # Q3.12
    i, f, o = logistic(pre_i, pre_f, pre_o); z = tanh(pre_z)                      # Q0.15
    c = clip(sat16(rdbpot(f * c, 15) + rdbpot(i * z, 30 + cell_scale)))
    h = sat8(MBQM(o * tanh(c), hidden) + hidden_zp)

where ``b_in`` and ``b_rec`` hold the gate bias and the activations' zero points times the row
sums of the weights (TFLite's ``PrecomputeZeroPointTimesWeightWithBias``), ``logistic``/``tanh``
are gemmlowp's int16 fixed-point functions (:mod:`.fixedpoint`, looked up in 65,536-entry
tables), and ``cell_scale`` is the base-2 logarithm of the cell state's scale. Only the plain
form is taken: no peepholes, projection, layer normalization or coupled input-forget gate
(:func:`describe_form` names what a model's LSTM has instead; such a model is partitioned).
The state starts from TFLite's reset values (``h`` at its zero point, ``c`` at 0), as a freshly
allocated interpreter runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from tvm import relax, te, tirx

from . import requant as rq
from .fixedpoint import logistic_table, saturate16, tanh_table, wrap16

__all__ = ["LstmLayer", "emit_lstm", "lstm_np", "lstm_step_te"]

GATES = ("input", "forget", "cell", "output")


@dataclass(frozen=True)
class LstmLayer:
    """An integer LSTM layer: the weights ``(4, H, I)`` and ``(4, H, H)`` (gates in
    :data:`GATES` order), the effective biases ``(4, H)`` (zero points folded in), TFLite's
    multipliers ``(q, shift)`` per gate, the hidden state's multiplier and zero point, the
    output state's zero point (its reset value), the cell state's scale exponent and clip (0: none)."""

    w_in: np.ndarray
    w_rec: np.ndarray
    b_in: np.ndarray
    b_rec: np.ndarray
    in_scale: Tuple[Tuple[int, int], ...]
    rec_scale: Tuple[Tuple[int, int], ...]
    hidden_scale: Tuple[int, int]
    hidden_zp: int
    state_zp: int
    cell_scale: int
    cell_clip: int
    time_major: bool

    @property
    def units(self) -> int:
        return int(self.w_in.shape[1])

    @classmethod
    def from_quantized(cls, w_in, w_rec, biases, s_x: float, zp_x: int, s_w_in, s_w_rec, s_h: float, zp_h: int,
                       s_c: float, hidden: Tuple[float, int], cell_clip: float, time_major: bool) -> "LstmLayer":
        """From the model's tensors as TFLite's ``PopulateQuantizedLstmParams8x8_16`` reads them:
        the effective scales in float32 (``s_w * s_x / 2**-12``), ``hidden`` the scale and zero
        point of the hidden-state intermediate."""
        w_in = np.asarray(w_in, np.int8)
        w_rec = np.asarray(w_rec, np.int8)
        q12 = np.float32(2.0 ** -12)
        in_scale = tuple(rq.quantize_multiplier(float(np.float32(s) * np.float32(s_x) / q12)) for s in s_w_in)
        rec_scale = tuple(rq.quantize_multiplier(float(np.float32(s) * np.float32(s_h) / q12)) for s in s_w_rec)
        p15 = np.float32(2.0 ** -15)
        hidden_scale = rq.quantize_multiplier(float(p15 / np.float32(hidden[0]) * p15))
        cell_scale = int(round(np.log2(s_c)))
        if not 2.0 ** cell_scale == float(s_c):
            raise ValueError(f"cell state scale {s_c} is not a power of two")
        clip = int(np.int16(min(max(np.float32(cell_clip) / np.float32(s_c), -32768.0), 32767.0))) \
            if cell_clip > 0 else 0
        b_in = np.asarray(biases, np.int64) - zp_x * w_in.astype(np.int64).sum(axis=2)
        b_rec = -zp_h * w_rec.astype(np.int64).sum(axis=2)
        return cls(w_in, w_rec, b_in.astype(np.int32), b_rec.astype(np.int32), in_scale, rec_scale, hidden_scale,
                   int(hidden[1]), int(zp_h), cell_scale, clip, bool(time_major))


# ----------------------------------------------------------------------------- numpy reference
def lstm_np(x: np.ndarray, layer: LstmLayer) -> np.ndarray:
    """The layer over int8 ``x`` of ``(B, T, I)`` (``(T, B, I)`` when time-major): the hidden
    state of every step, int8."""
    xs = np.asarray(x, np.int64)
    if layer.time_major:
        xs = np.swapaxes(xs, 0, 1)
    batch, steps, _ = xs.shape
    h = np.full((batch, layer.units), layer.state_zp, np.int64)
    c = np.zeros((batch, layer.units), np.int64)
    sig, tanh_gate, tanh_cell = (t.astype(np.int64) for t in _tables(layer))
    out = np.zeros((batch, steps, layer.units), np.int8)
    for t in range(steps):
        pre = []
        for g in range(4):
            a_in = xs[:, t] @ layer.w_in[g].astype(np.int64).T + layer.b_in[g]
            a_rec = h @ layer.w_rec[g].astype(np.int64).T + layer.b_rec[g]
            acc = saturate16(rq.multiply_by_quantized_multiplier(a_in, *layer.in_scale[g]))
            pre.append(saturate16(rq.multiply_by_quantized_multiplier(a_rec, *layer.rec_scale[g]) + acc) + (1 << 15))
        i, f, z, o = sig[pre[0]], sig[pre[1]], tanh_gate[pre[2]], sig[pre[3]]
        c = wrap16(rq.rounding_divide_by_pot(f * c, 15)) + wrap16(rq.rounding_divide_by_pot(i * z,
                                                                                                30 + layer.cell_scale))
        c = saturate16(c)
        if layer.cell_clip:
            c = np.clip(c, -layer.cell_clip, layer.cell_clip)
        h = rq.multiply_by_quantized_multiplier(o * tanh_cell[c + (1 << 15)], *layer.hidden_scale).astype(np.int64)
        h = np.clip(h + layer.hidden_zp, -128, 127)
        out[:, t] = h
    return np.swapaxes(out, 0, 1) if layer.time_major else out


def _tables(layer: LstmLayer):
    """The gates' logistic (Q3.12 in), the cell gate's tanh (Q3.12 in) and the cell state's tanh
    (Q``15 + cell_scale`` in), each indexed by ``value + 32768``."""
    return logistic_table(3), tanh_table(3), tanh_table(15 + layer.cell_scale)


# ----------------------------------------------------------------------------- TIR kernel
def _i32(e):
    return e.astype("int32")


def lstm_step_te(x, step, h, c, w_in, w_rec, b_in, b_rec, sig, tanh_gate, tanh_cell, *, layer: LstmLayer):
    """One time step: the int8 sequence ``x`` at the time ``step[0]`` (a tensor, so that every
    step runs the same PrimFunc), ``h (B, H)`` and int16 ``c (B, H)`` -> the new ``h`` and ``c``
    (see the module's docstring; the tables from :func:`lstm_tables`). The two products are left
    out of MetaSchedule's rules (``schedule_rule`` "None"): its multi-level tiling cannot fuse a
    consumer of two reductions, and a step is a few hundred multiply-accumulates."""
    n_in = int(x.shape[2])
    batch, units = (int(d) for d in h.shape)
    t = step[0]

    def x_at(b, k):
        return x[t, b, k] if layer.time_major else x[b, t, k]

    k_in = te.reduce_axis((0, n_in), "k_in")
    k_rec = te.reduce_axis((0, units), "k_rec")
    untuned = {"schedule_rule": "None"}
    acc_in = te.compute((4, batch, units), lambda g, b, j: te.sum(_i32(x_at(b, k_in)) * _i32(w_in[g, j, k_in]),
                                                                  axis=k_in), name="acc_in", attrs=untuned)
    acc_rec = te.compute((4, batch, units), lambda g, b, j: te.sum(_i32(h[b, k_rec]) * _i32(w_rec[g, j, k_rec]),
                                                                   axis=k_rec), name="acc_rec", attrs=untuned)
    lo, hi = -(1 << 15), (1 << 15) - 1

    def gate_index(g: int):
        """The gate's pre-activation, Q3.12, as an index into its table (static multipliers: a
        shift chosen at run time defeats MetaSchedule's feature extraction)."""
        def pre(b, j):
            from_input = rq.clamp_tir(rq.mbqm_tir(acc_in[g, b, j] + b_in[g, j], *layer.in_scale[g]), lo, hi)
            total = rq.mbqm_tir(acc_rec[g, b, j] + b_rec[g, j], *layer.rec_scale[g]) + from_input
            return rq.clamp_tir(total, lo, hi) + tirx.const(1 << 15, "int32")

        return te.compute((batch, units), pre, name=f"{GATES[g]}_gate")

    index = [gate_index(g) for g in range(4)]

    def cell(b, j):
        i, f = _i32(sig[index[0][b, j]]), _i32(sig[index[1][b, j]])
        z = _i32(tanh_gate[index[2][b, j]])
        kept = rq.rdbpot_tir(f * _i32(c[b, j]), 15).astype("int16").astype("int32")
        added = rq.rdbpot_tir(i * z, 30 + layer.cell_scale).astype("int16").astype("int32")
        new = rq.clamp_tir(kept + added, lo, hi)
        if layer.cell_clip:
            new = rq.clamp_tir(new, -layer.cell_clip, layer.cell_clip)
        return new.astype("int16")

    c_new = te.compute((batch, units), cell, name="cell_state")

    def hidden(b, j):
        o = _i32(sig[index[3][b, j]])
        t = _i32(tanh_cell[_i32(c_new[b, j]) + tirx.const(1 << 15, "int32")])
        return rq.requantize_tir(o * t, *layer.hidden_scale, layer.hidden_zp, -128, 127, "int8")

    h_new = te.compute((batch, units), hidden, name="hidden_state")
    return [h_new, c_new]


def lstm_tables(layer: LstmLayer):
    """The three lookup tables of :func:`lstm_step_te`, as Relax constants."""
    return [relax.const(t) for t in _tables(layer)]


def emit_lstm(bb: relax.BlockBuilder, x, layer: LstmLayer, steps: int, batch: int):
    """The layer over the int8 sequence ``x`` as one :func:`lstm_step_te` call per time step
    (the same PrimFunc each time, so one tuning task), the steps' hidden states stacked: the
    expression of TFLite's output ``(B, T, H)`` (``(T, B, H)`` when time-major)."""
    axis = 0 if layer.time_major else 1
    h = relax.const(np.full((batch, layer.units), layer.state_zp, np.int8))
    c = relax.const(np.zeros((batch, layer.units), np.int16))
    weights = [relax.const(a) for a in (layer.w_in, layer.w_rec, layer.b_in, layer.b_rec)]
    tables = lstm_tables(layer)
    outs = []
    for t in range(steps):
        step = relax.const(np.array([t], np.int32))
        state = bb.emit(bb.call_te(lambda *a: lstm_step_te(*a, layer=layer), x, step, h, c, *weights, *tables,
                                   primfunc_name_hint="int8_lstm_step"))
        h, c = bb.emit(relax.TupleGetItem(state, 0)), bb.emit(relax.TupleGetItem(state, 1))
        outs.append(relax.op.expand_dims(h, axis))
    return relax.op.concat(outs, axis=axis)
