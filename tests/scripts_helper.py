"""Load a benchmark script from ``scripts/`` as a module, by path, for tests of its pieces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` as the module ``NAME``, loaded once per test session.

    A script imports its siblings by name (``from bench_interleaved import interleave``), which
    works when it runs as ``python scripts/NAME.py``; here such a sibling is loaded the same way
    first, so ``scripts/`` never goes onto ``sys.path``.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"no script {name}.py in {SCRIPTS}")
    while True:
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # a dataclass looks its module up while the script runs
        try:
            spec.loader.exec_module(module)
            return module
        except ModuleNotFoundError as err:
            del sys.modules[name]
            if err.name == name or not (SCRIPTS / f"{err.name}.py").is_file():
                raise
            load_script(err.name)
        except BaseException:
            del sys.modules[name]
            raise
