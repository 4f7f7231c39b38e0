"""The layering of docs/architecture.md holds: import-linter's contracts in ``.importlinter``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import llama_index_finetune_embed

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(llama_index_finetune_embed.__file__).parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')"
)


def _lint(package_parent: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts over the package in ``package_parent``."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": str(LINT_IMPORTS.parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_contracts_hold():
    result = _lint(PACKAGE.parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contracts_catch_a_lower_layer_importing_a_higher_one(tmp_path):
    """A copy of the package with three wrong imports: each breaks its contract."""
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "data"))
    with (copy / "dataset.py").open("a", encoding="utf-8") as fh:  # a foundation module -> cli
        fh.write("\n\ndef _upward():\n    from llama_index_finetune_embed import cli  # noqa\n")
    with (copy / "adapter" / "train.py").open("a", encoding="utf-8") as fh:  # into evaluate
        fh.write("\nfrom llama_index_finetune_embed.evaluate.metrics import hit_rate  # noqa\n")
    with (copy / "pipeline" / "run.py").open("a", encoding="utf-8") as fh:  # another's private
        fh.write("\nfrom llama_index_finetune_embed.generate import _gguf  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    out = " ".join(result.stdout.split())  # the report wraps long lines
    for contract in (
        "Each layer imports only the layers below it",
        "The evaluate stage is used through its package's public names",
        "A private module (_name) is imported only from within its own package",
    ):
        verdict = out.split(contract, 1)[1]  # the summary line: "<name> ... KEPT|BROKEN"
        assert "BROKEN" in verdict, contract
        assert "KEPT" not in verdict or verdict.index("BROKEN") < verdict.index("KEPT"), contract


def test_the_top_level_stays_small():
    """At most 10 modules beside the stage subpackages (issue #22), and every one in a layer."""
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(modules) <= 10, modules
    layers = (ROOT / ".importlinter").read_text(encoding="utf-8")
    for name in modules:
        assert name in layers, f"{name}.py is in no layer of .importlinter"


def test_nothing_imports_the_package_root():
    """``__version__`` comes from ``_version.py``: no module imports the package ``__init__``."""
    import grimp

    graph = grimp.build_graph("llama_index_finetune_embed")
    importers = graph.find_modules_that_directly_import("llama_index_finetune_embed")
    assert not importers, importers
