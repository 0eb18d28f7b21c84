"""``tvmq-diff OLD NEW``: the release gate on two runs — two ``tvmq-tune`` reports, or two
``tvmq-release`` summaries."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from .common import ArgumentParser, exit_with, fraction, run_command

DESCRIPTION = """\
Compare a run with an earlier one, pair by pair, as tvmq-release --baseline does: slower (the
95% confidence intervals of the latency do not overlap and the median grew by more than
--threshold), faster, the same, new, or a changed verdict (pass <-> fail, built <-> refused).
OLD and NEW are each a tvmq-tune report.json, a tvmq-release summary.json, or a folder holding
one. Two single reports are compared with each other whatever their model and target.
"""

EPILOG = """\
exit status:
  0 nothing regressed and NEW has no failed verification or error; 1 a regression, a failed
  verification or an error; 2 a file that is neither kind (one line on stderr); 3 an internal error.
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="tvmq-diff", description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", metavar="OLD", help="the baseline: report.json, summary.json or their folder")
    p.add_argument("new", metavar="NEW", help="the run to gate")
    p.add_argument("--threshold", type=fraction, default=0.05, metavar="FRACTION",
                   help="slowdown that counts as a regression (default: 0.05)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)

    def body() -> int:
        from tvmq.release.gate import exit_status, gate, pair_key, read_pairs, worst

        old, old_file, old_kind = read_pairs(args.old)
        new, new_file, new_kind = read_pairs(args.new)
        if old_kind == new_kind == "report":  # two single runs: compared with each other, whatever their names
            old = [{**old[0], "model": new[0]["model"], "target": new[0]["target"], "mode": new[0]["mode"]}]
        result = gate(new, old, args.threshold)
        level = worst(new, result)
        rows = []
        for p in new:
            c = result.changes[pair_key(p)]
            rows.append({"model": p["model"], "target": p["target"], "mode": p["mode"], "verdict": p["verdict"],
                         **c.to_dict()})
        out = {"old": old_file, "new": new_file, "threshold": args.threshold, "worst": level,
               "exit_status": exit_status(level), "pairs": rows,
               "gone": [{"model": k[0], "target": k[1], "mode": k[2]} for k in result.gone]}
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            table = Table(title=f"{old_file} -> {new_file}", title_justify="left")
            for col in ("model", "target", "verdict", "change", "detail"):
                table.add_column(col)
            for r in rows:
                colour = "red" if r["regression"] else ("green" if r["change"] == "faster" else "white")
                table.add_row(r["model"] or "", r["target"] or "", r["verdict"] or "",
                              f"[{colour}]{r['change']}", r["change_detail"])
            Console().print(table)
            for g in out["gone"]:
                Console().print(f"gone: {g['model']} on {g['target']} ({g['mode']})", highlight=False)
            Console().print(f"worst: {level}", highlight=False)
        return out["exit_status"]

    exit_with(run_command("tvmq-diff", body, console))


if __name__ == "__main__":
    main()
