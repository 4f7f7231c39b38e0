"""The front door cannot rot: the README's Python blocks run, and the docs' relative links resolve.

Every ```python block of README.md runs as a script in a fresh process, offline (no API key, no
Hugging Face hub), in an empty directory; a block whose first line is ``# skip: <reason>`` is
skipped. Every relative markdown link in README.md and docs/*.md must name an existing file, and
its ``#anchor``, when it has one, a heading of that file (GitHub's slugs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK_TIMEOUT_S = 600

_FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\n\n).)+?\1", re.DOTALL)  # may wrap, not span paragraphs
_SKIP = re.compile(r"#\s*skip:\s*\S")


def _split_fences(text: str) -> tuple[list[tuple[str, str]], str]:
    """Return the fenced blocks as (info string, body) and the text outside them."""
    blocks: list[tuple[str, str]] = []
    prose: list[str] = []
    fence, info, body = None, "", []
    for line in text.splitlines():
        match = _FENCE.match(line.strip())
        if fence is None and match:
            fence, info, body = match.group(1), match.group(2).strip(), []
        elif fence is not None and _closes(line, fence):
            blocks.append((info, "\n".join(body) + "\n"))
            fence = None
        elif fence is not None:
            body.append(line)
        else:
            prose.append(line)
    return blocks, "\n".join(prose)


def _closes(line: str, fence: str) -> bool:
    """A closing fence: only the opening fence's character, at least as many of them."""
    stripped = line.strip()
    return stripped.startswith(fence) and not stripped.strip(fence[0])


def _python_blocks() -> list[str]:
    blocks, _ = _split_fences(README.read_text(encoding="utf-8"))
    return [body for info, body in blocks if info.split()[:1] == ["python"]]


def _block_id(body: str) -> str:
    first = next((line for line in body.splitlines() if line.strip()), "")
    return first.strip()[:40]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_readme_has_python_blocks_and_few_skips() -> None:
    blocks = _python_blocks()
    assert blocks, "README.md has no ```python block"
    skipped = [b for b in blocks if _SKIP.match(b.lstrip())]
    assert len(skipped) <= 2, f"{len(skipped)} README blocks are skipped; keep it to 2 at most"


README_BLOCKS = [
    pytest.param(body, id=f"block{i}-{_block_id(body)}")
    for i, body in enumerate(_python_blocks(), 1)
]


@pytest.mark.slow
@pytest.mark.parametrize("body", README_BLOCKS)
def test_readme_python_blocks_run(body: str, tmp_path: Path) -> None:
    if _SKIP.match(body.lstrip()):
        pytest.skip(body.lstrip().splitlines()[0])
    script = tmp_path / "readme_block.py"
    script.write_text(body, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_env(), capture_output=True,
        text=True, timeout=BLOCK_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, (
        f"README block exited {done.returncode}:\n{body}\n--- stderr ---\n{done.stderr[-6000:]}"
    )


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to '-'.

    Example:
        >>> slug("The main job: `finetune-embed run`")
        'the-main-job-finetune-embed-run'
    """
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    _, prose = _split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for line in prose.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else f"{base}-{count}")
    return anchors


def _links(path: Path) -> list[str]:
    _, prose = _split_fences(path.read_text(encoding="utf-8"))
    prose = _INLINE_CODE.sub("", prose)
    return _LINK.findall(prose)


def _broken_links(path: Path) -> list[str]:
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http(s):, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    broken = _broken_links(path)
    assert not broken, "\n".join(broken)


def test_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for target in _links(README)}
    unlinked = [p.name for p in DOCS if f"docs/{p.name}" not in linked]
    assert not unlinked, f"README.md's docs index does not link {unlinked}"
