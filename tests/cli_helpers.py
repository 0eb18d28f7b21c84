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
