"""What a machine is: named target profiles (one TOML file each) and host detection.

>>> from tvmq.targets import get_profile, resolve_target
>>> prof, why = resolve_target("native")
>>> target = prof.tvm_target()            # tvm.target.Target, JSON-dict form
>>> prof.check_runnable()                 # MissingISA when this host lacks its CPU flags
"""

from .host import HostInfo, host_info
from .profile import DATA_LAYOUTS, INT8_SCHEMES, TargetProfile, get_profile, list_profiles, load_profile_file
from .resolve import NATIVE_NAMES, detect_native, resolve_target
from .table import render_targets_table

__all__ = [
    "DATA_LAYOUTS",
    "INT8_SCHEMES",
    "NATIVE_NAMES",
    "HostInfo",
    "TargetProfile",
    "detect_native",
    "get_profile",
    "host_info",
    "list_profiles",
    "load_profile_file",
    "render_targets_table",
    "resolve_target",
]
