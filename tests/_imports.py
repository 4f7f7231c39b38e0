"""What importing one module of the package loads, seen in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def modules_loaded_by(module: str) -> set[str]:
    """Names in ``sys.modules`` after importing ``module`` alone, without the package
    ``__init__`` (which imports every stage): what the module itself depends on."""
    import llama_index_finetune_embed

    package_dir = str(Path(llama_index_finetune_embed.__file__).parent)
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('llama_index_finetune_embed')\n"
        f"pkg.__path__ = [{package_dir!r}]\n"
        "sys.modules['llama_index_finetune_embed'] = pkg\n"
        f"import {module}\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())
