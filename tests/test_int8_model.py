"""Whole-model test: MobileNet V1 0.25/128 (uint8) through the int8 lowering vs TFLite."""

from __future__ import annotations

import numpy as np
import pytest

from tests._int8_helpers import compare, import_tflite, run_tflite, run_tvm

pytestmark = pytest.mark.shared_models


def _top5(v):
    return [int(i) for i in np.argsort(-v.reshape(-1).astype(np.int64), kind="stable")[:5]]


def _constants(mod):
    import tvm
    from tvm import relax

    out = []
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        for val in relax.analysis.get_var2val(func).values():
            args = list(val.args) if isinstance(val, relax.Call) else []
            for a in args:
                for e in (a.fields if isinstance(a, relax.Tuple) else [a]):
                    if isinstance(e, tvm.ir.expr.GenericConst):
                        out.append(e.value.numpy())
    return out


def test_mobilenet_v1_int8_matches_tflite(small_real_model, models_dir):
    Image = pytest.importorskip("PIL.Image")
    from tvmq.int8 import lower_qdq_to_int8

    buf = small_real_model.read_bytes()
    img = np.asarray(Image.open(models_dir / "cat.bmp").convert("RGB").resize((128, 128)), dtype=np.uint8)[None]
    lowering = lower_qdq_to_int8(import_tflite(buf))
    low = lowering.mod
    stats = lowering.stats.to_dict()
    print("coverage:", stats)
    assert stats["conv2d"]["lowered"] == 15 and stats["depthwise_conv2d"]["lowered"] == 13
    assert stats["avg_pool2d"]["lowered"] == 1
    # only the softmax stays on the QDQ path
    assert stats["remaining"] == {"dequantize": 1, "quantize": 1}
    consts = _constants(low)
    big = [c for c in consts if c.size > 1]
    assert not [c for c in big if c.dtype.kind == "f"], "float tensor constants left in the lowered module"
    wbytes = sum(c.nbytes for c in big if c.dtype in (np.int8, np.uint8))
    print(f"integer weight constants: {wbytes} bytes in {sum(c.dtype in (np.int8, np.uint8) for c in big)} tensors")
    ours = run_tvm(low, [img])
    for kernels in ("optimized", "reference", "xnnpack"):
        ref = run_tflite(buf, [img], kernels=kernels)
        share, maxd = compare(ours, ref)
        print(f"mobilenet_v1 int8 vs TFLite {kernels}: identical {share:.4f}, max abs diff {maxd}, "
              f"top5 ours {_top5(ours)} tflite {_top5(ref)}")
        assert _top5(ours) == _top5(ref)
        if kernels != "xnnpack":
            assert maxd == 0


@pytest.mark.parametrize("scheme", ["avx2", "avx512", "vnni", "sdot"])
def test_every_dot_scheme_computes_tflites_integers(small_real_model, models_dir, scheme):
    """Each target family's packed-weight algebra (weight shift, window sum, channel padding) on a
    real model, built without tensorization so that it runs on any host: bit-exact against TFLite's
    reference kernels. The VNNI and Arm forms cannot run tensorized here; this is what checks their
    arithmetic (a padded-channel error in the window-sum form got past single-layer tests)."""
    Image = pytest.importorskip("PIL.Image")
    from tvmq.int8 import lower_qdq_to_int8

    buf = small_real_model.read_bytes()
    img = np.asarray(Image.open(models_dir / "cat.bmp").convert("RGB").resize((128, 128)), dtype=np.uint8)[None]
    lowering = lower_qdq_to_int8(import_tflite(buf), scheme=scheme)
    assert sum(lowering.intrinsics.values()) >= 14, lowering.intrinsics
    share, maxd = compare(run_tvm(lowering.mod, [img]), run_tflite(buf, [img], kernels="reference"))
    print(f"{scheme}: {lowering.intrinsics}; identical {share:.4f}, max abs diff {maxd}")
    assert maxd == 0
