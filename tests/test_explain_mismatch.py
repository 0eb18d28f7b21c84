"""``--explain-mismatch`` and the verification policy: an integer build is compared with the TFLite
kernels it promises to compute, every value equal; when it is not, the run names the first tensor
where tvmq and TFLite part. Here a kernel is made wrong on purpose (ADD's output moved by one unit)
and the tool must point at the ADD, with every tensor before it agreeing."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cli_helpers import load_json, run_tune

pytest.importorskip("ai_edge_litert")


def _broken_add(monkeypatch):
    """ADD's integer kernel, plus one unit (clamped): an off-by-one a rounding slip would make."""
    from tvm import te, tirx

    from tvmq.int8 import rewrite_elementwise

    real = rewrite_elementwise.add_te

    def off_by_one(a, b, p):
        y = real(a, b, p)
        hi = tirx.const(np.iinfo(p.out.dtype).max, "int32")
        return te.compute(y.shape, lambda *i: tirx.min(y[i].astype("int32") + 1, hi).astype(p.out.dtype),
                          name="add_plus_one")

    monkeypatch.setattr(rewrite_elementwise, "add_te", off_by_one)


def _explained(capsys, tmp_path, model_factory):
    """``tvmq-tune --requant tflite --explain-mismatch`` on the small int8 CNN, untuned: exit status, output, report."""
    report_path = tmp_path / "r.json"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("int8")), "--int8", "--requant", "tflite", "--trials", "0",
                                "--repeat", "1", "--bench-seconds", "0", "--explain-mismatch",
                                "--out", str(tmp_path / "o"),
                                "--json", str(report_path), "--db", str(tmp_path / "t.db")])
    return rc, err, (load_json(report_path) if report_path.exists() else None)


def test_explain_mismatch_names_the_broken_kernel(capsys, tmp_path, model_factory, monkeypatch):
    _broken_add(monkeypatch)
    rc, err, r = _explained(capsys, tmp_path, model_factory)
    assert rc == 1, err
    assert r["verdict"] == "fail"
    v = r["verification"]
    assert v["kernels"] == "reference" and v["exact"] and "BUILTIN_REF" in v["reference"]
    assert v["failures"] and "differs by up to" in v["failures"][0]
    m = r["mismatch"]
    first = m["first"]
    assert first["operator"] == "ADD", first
    assert first["max_abs_diff"] >= 1
    order = [t["tensor"] for t in m["tensors"]]
    before = m["tensors"][:order.index(first["tensor"])]
    assert [t["operator"] for t in before] == ["CONV_2D", "DEPTHWISE_CONV_2D"]
    assert all(t["agrees"] for t in before)
    assert any("agrees" in line for line in m["first_operator_inputs"])
    assert "first tensor where they part" in err and "ADD" in err


def test_the_same_build_unbroken_agrees_everywhere(capsys, tmp_path, model_factory):
    rc, err, r = _explained(capsys, tmp_path, model_factory)
    assert rc == 0, err
    assert r["verdict"] == "pass" and r["mismatch"]["first"] is None
    assert r["mismatch"]["compared"] >= 6 and r["mismatch"]["differing"] == 0
    assert all(o["max_abs_diff"] == 0 for o in r["images"][0]["outputs"])


@pytest.mark.parametrize("flags, kernels, exact, tolerance", [
    ([], "xnnpack", True, 0.0),  # the default: the integer path, requantized as XNNPACK does
    (["--no-int8"], "xnnpack", False, 2.0),
    (["--no-int8", "--tolerance", "0"], "xnnpack", False, 0.0),
    (["--requant", "tflite"], "reference", True, 0.0),
    (["--int8", "--requant", "xnnpack"], "xnnpack", True, 0.0),
    (["--requant", "tflite", "--tolerance", "1"], "reference", False, 1.0),
])
def test_verification_policy_follows_the_build(flags, kernels, exact, tolerance):
    from tvmq.cli.tune import build_parser
    from tvmq.options import RunOptions
    from tvmq.report.verify import verification_policy

    args = vars(build_parser().parse_args(["--model", "m.tflite", *flags]))
    args.pop("list_targets")
    opts = RunOptions.from_mapping(args)
    policy = verification_policy(opts.codegen.int8, opts.codegen.requant, opts.measurement.tolerance)
    assert (policy.kernels, policy.exact, policy.tolerance) == (kernels, exact, tolerance)


def test_exact_verdict_fails_on_one_unit_even_when_the_top5_agree():
    from tvmq.report.verify import compare_outputs

    ref = np.zeros((1, 10), np.uint8)
    ref[0, :5] = [200, 150, 100, 50, 25]
    ours = ref.copy()
    ours[0, 9] = 1  # a class far from the top-5
    assert compare_outputs("x", [ours], [ref], ["probs"]).passed
    v = compare_outputs("x", [ours], [ref], ["probs"], tolerance=0, exact=True)
    assert v.top5_match and not v.passed
    assert v.failures() == ["x: output 'probs' [1, 10] differs by up to 1 (90.0% identical)"]


@pytest.mark.parametrize("flags", [["--build-only"], ["--rpc-tracker", "127.0.0.1:9", "--rpc-key", "k"]])
def test_explain_mismatch_needs_this_host(capsys, flags):
    rc, err = run_tune(capsys, ["--model", "m.tflite", "--explain-mismatch", *flags])
    assert rc == 2
    assert "--explain-mismatch runs every tensor of the model on this host" in err
    assert "Traceback" not in err
