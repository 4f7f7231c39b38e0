"""Builds the package's canary set from the Python FAQ: human-written questions -> their answers.

The guard in ``finetune()`` checks a finetuned model on questions people wrote, about a general
subject, so that a recipe that forgets how to retrieve in general is caught. Its data is the
Python documentation's FAQ (questions written by the Python developers, each answered in its
section; PSF License Agreement, see ``llama_index_finetune_embed/data/README.md``), read from the
HTML of Debian's ``python3.11-doc`` package::

    apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb /tmp/pydoc
    python benchmarks/build_canary.py /tmp/pydoc/usr/share/doc/python3.11/html/faq

Writes ``llama_index_finetune_embed/data/canary_python_faq.json`` (the dataset JSON format).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "llama_index_finetune_embed" / "data"
PAGES = ("general", "programming", "design", "library", "extending", "windows", "gui",
         "installed")
MAX_ANSWER_CHARS = 2000


class FAQParser(HTMLParser):
    """(heading, section text) for every heading of a Sphinx FAQ page's body."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_body = False
        self.in_heading = False
        self.skip = 0  # inside a headerlink anchor ("¶")
        self.items: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "div" and "body" in cls.split():
            self.in_body = True
        if tag == "div" and "sphinxsidebar" in cls:
            self.in_body = False
        if not self.in_body:
            return
        if tag in ("h1", "h2", "h3", "h4"):  # every heading starts a section; questions end in ?
            self.in_heading = True
            self.items.append(["", ""])
        if tag == "a" and "headerlink" in cls:
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.skip:
            self.skip -= 1
        if tag in ("h1", "h2", "h3", "h4"):
            self.in_heading = False

    def handle_data(self, data: str) -> None:
        if not self.in_body or self.skip or not self.items:
            return
        self.items[-1][0 if self.in_heading else 1] += data


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def main(faq_dir: str) -> None:
    queries, corpus, relevant = {}, {}, {}
    for page in PAGES:
        parser = FAQParser()
        parser.feed(Path(faq_dir, f"{page}.html").read_text(encoding="utf-8"))
        for question, answer in parser.items:
            question, answer = clean(question), clean(answer)[:MAX_ANSWER_CHARS]
            if not question.endswith("?") or len(answer.split()) < 8:
                continue
            key = hashlib.sha1(f"{page}/{question}".encode()).hexdigest()[:12]
            queries[f"q-{key}"] = question
            corpus[f"faq-{page}-{key}"] = answer
            relevant[f"q-{key}"] = [f"faq-{page}-{key}"]
    data = {"queries": queries, "corpus": corpus, "relevant_docs": relevant, "mode": "text"}
    OUT.mkdir(exist_ok=True)
    path = OUT / "canary_python_faq.json"
    path.write_text(json.dumps(data, indent=0, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(queries)} questions -> {path}")


if __name__ == "__main__":
    main(sys.argv[1])
