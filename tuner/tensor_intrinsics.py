"""Importing TVM's tensor intrinsics (``tvm.s_tir.tensor_intrin``) in seconds instead of ~18 s.

Every process that makes a MetaSchedule ``TuneContext`` or builds a candidate imports that
package: the main process of a run (tuning, and the design-space point of ``--build-only`` and
of untuned int8 dot products) and every build worker. It parses about 250 TVMScript functions
(CUDA's among them), and TVMScript's ``@prim_func`` calls ``inspect.stack()`` for each, which asks
``inspect.getmodule`` about every frame of the stack. For the pseudo-files on it
(``<frozen importlib._bootstrap>``, ``<string>``, ``<ast>``) Python's cache never answers, so each
such frame walks all of ``sys.modules`` (over 1,000 modules): 18.0 s for the import on AMD EPYC
(Zen 4, 2 vCPUs, 2026-12-03), 2.7 s with the cache filled as below.

:func:`import_tensor_intrinsics` fills ``inspect``'s file-to-module cache for those pseudo-files
before the import: the frozen importlib modules for their own frames, ``builtins`` (a module
without source) for the others. No source is found for any of them either way, so
``inspect.stack()`` returns the same frames, file names and (empty) context lines as without it.
"""

from __future__ import annotations

import inspect
import sys

#: pseudo-files on the stack while TVMScript parses: the module whose frames they are
_PSEUDO_FILES = {
    "<frozen importlib._bootstrap>": "importlib._bootstrap",
    "<frozen importlib._bootstrap_external>": "importlib._bootstrap_external",
    "<string>": "builtins",
    "<ast>": "builtins",
}


def import_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (registering TVM's own tensor intrinsics), fast."""
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    for pseudo_file, module in _PSEUDO_FILES.items():
        inspect.modulesbyfile.setdefault(pseudo_file, module)
    import tvm.s_tir.tensor_intrin  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
