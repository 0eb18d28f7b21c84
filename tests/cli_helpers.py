"""Running the command-line entry points in-process, as a user would call them."""

from __future__ import annotations

import json


def run_main(main, capsys, argv) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def run_tune(capsys, argv) -> tuple[int, str]:
    from tvmq.cli.tune import main

    return run_main(main, capsys, argv)


def load_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def untuned_build(model_path, out):
    """``model_path`` built untuned for this host, one thread, exported to the folder ``out``."""
    from tvmq.options import CodegenOptions, SourceOptions, TargetOptions
    from tvmq.stages import Steps, build, export, load, lower, plan, prepare

    steps = Steps.quiet()
    plan_ = plan(TargetOptions(name="native", threads=1), steps)
    model, info = load(SourceOptions(model=str(model_path)), steps)
    prepared = prepare(model, info, plan_.profile, CodegenOptions(), steps)
    lowered = lower(prepared, plan_.target, steps)
    export(build(lowered, None, "naive", steps), prepared, plan_, out, steps)
    return out
