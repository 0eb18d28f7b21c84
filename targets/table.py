"""The ``--list-targets`` table."""

from __future__ import annotations

from .host import HostInfo, host_info
from .profile import list_profiles

__all__ = ["render_targets_table"]


def render_targets_table(host: HostInfo | None = None):
    """A rich Table of every profile: name, aliases, arch, mcpu, int8 instruction, the tvmq
    dot-product scheme ``--int8`` tensorizes with, layout, winograd and whether this host can
    run its code (else which flags it lacks)."""
    from rich.table import Table

    host = host or host_info()
    table = Table(title=f"tvmq targets (this host: {host.describe()})")
    for col in ("name", "aliases", "arch", "mcpu", "int8 instruction", "--int8 scheme", "layout", "winograd",
                "runs here?"):
        table.add_column(col, no_wrap=col in ("name", "mcpu"))
    for p in list_profiles():
        missing = p.missing_host_flags(host)
        if not missing:
            runs = "[green]yes[/green]"
        elif host.arch != p.arch:
            runs = f"no ({p.arch})"
        else:
            runs = "[red]no[/red]: lacks " + ", ".join(missing)
        intrin = f" ({p.tensor_intrin})" if p.tensor_intrin else ""
        table.add_row(p.name, ", ".join(p.aliases), p.arch, p.mcpu, p.int8_instruction + intrin,
                      p.int8_scheme or "-", p.layout, "yes" if p.winograd else "no", runs)
    return table
