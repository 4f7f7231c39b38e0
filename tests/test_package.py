"""The package surface: public names, no heavy imports, every stage close to ``__init__``."""

from __future__ import annotations

import subprocess
import sys

import llama_index_finetune_embed as pkg

HEAVY = ("torch", "sentence_transformers", "transformers", "matplotlib")


def test_import_and_help_load_no_heavy_library():
    code = (
        "import sys, llama_index_finetune_embed, llama_index_finetune_embed.cli as cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_every_public_name_exists_and_lives_at_most_two_hops_from_init():
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        module = getattr(obj, "__module__", None)
        if name.startswith("__") or module is None or not callable(obj):
            continue
        parts = module.split(".")
        assert parts[0] == "llama_index_finetune_embed", (name, module)
        assert len(parts) <= 3, f"{name} lives in {module}: more than two hops from __init__"
