"""What the search is given on the built-in int8 model: the adds fused into the convolutions
before them, and the first round ordered by what each task costs untuned."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def built_in_tasks():
    from tvmq.model import inspect_model, load_model
    from tvmq.options import CodegenOptions
    from tvmq.stages import Steps, lower, prepare
    from tvmq.targets import get_profile
    from tvmq.tuner.tasks import describe

    loaded = load_model("builtin:mobilenet_v2_0.35_96")
    profile = get_profile("cascadelake")
    quiet = Steps.quiet()
    prepared = prepare(loaded, inspect_model(loaded), profile, CodegenOptions(int8=True, requant="xnnpack"), quiet)
    lowered = lower(prepared, profile.tvm_target(2), quiet)
    return describe(list(lowered.tasks))


def test_every_residual_add_runs_inside_its_convolution(built_in_tasks):
    names = [t.name for t in built_in_tasks]
    fused = [n for n in names if n.startswith("fused_int8_conv2d") and "_int8_add" in n]
    assert fused, names
    assert not [n for n in names if n.startswith("int8_add")], names  # no ADD kernel of its own
    assert not [n for n in names if "window_sum" in n], names  # VNNI: int8 activations flipped on load


def test_plain_loop_tasks_are_searched_before_dot_products_of_as_many_flops(built_in_tasks):
    from tvmq.tuner.scheduler import budget_tasks
    from tvmq.tuner.tune import NAIVE_FLOP_COST, _untuned_cost

    dots = [t for t in built_in_tasks if t.has_dot]
    depthwise = [t for t in built_in_tasks if "depthwise" in t.name]
    assert dots and depthwise and not any(t.has_dot for t in depthwise)
    assert all(t.has_dot for t in built_in_tasks if t.name.startswith(("int8_conv2d", "fused_int8_conv2d")))
    # by FLOPs alone the largest depthwise convolution would follow every dot product with more
    big_dw = max(depthwise, key=lambda t: t.weight * t.flops)
    ahead = [t for t in dots if t.weight * t.flops > big_dw.weight * big_dw.flops]
    assert ahead and min(t.weight * t.flops for t in ahead) < NAIVE_FLOP_COST * big_dw.weight * big_dw.flops
    order = budget_tasks(list(range(len(built_in_tasks))), [_untuned_cost(t) for t in built_in_tasks],
                         trials=32 * 12, per_iter=32)
    first = [built_in_tasks[i] for i in order]
    searched_ahead = [first.index(t) for t in ahead if t in first]
    assert big_dw in first and searched_ahead
    assert first.index(big_dw) < max(searched_ahead)
