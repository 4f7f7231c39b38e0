"""Shared offline fixtures: a tiny sentence-transformers model built on the fly, toy corpora."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from _corpus import write_docs
from _fake_openai import FakeOpenAIServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# vectors runs share (the canary's): one folder for the session, never the user's own cache
os.environ["LLAMA_INDEX_FINETUNE_EMBED_CACHE"] = tempfile.mkdtemp(prefix="vectors-")

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEED_DIR = SHARED / "data" / "seed10k"

TOY_TEXTS = [
    "Lyft was founded in 2012 and connects riders with drivers through its app.",
    "Uber operates a global mobility platform with rides, delivery and freight.",
    "Revenue grew in 2021 as ride volume recovered after the pandemic lockdowns.",
    "Drivers are classified as independent contractors, which is subject to legal challenge.",
    "The company relies on insurance coverage for auto liability claims and reserves.",
    "Bikes and scooters are offered in several cities through the light vehicles program.",
    "Autonomous vehicle research was sold to a subsidiary of Toyota in 2021.",
    "Risk factors include competition, regulation, and the health of the driver network.",
]


def _build_tiny_model(path: Path) -> Path:
    """A random 2-layer BERT with a WordPiece tokenizer trained on TOY_TEXTS (about 0.3 s)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = " ".join(TOY_TEXTS) + " what who when where why how is the of a in ?"
    tok.train_from_iterator(
        [words] * 3, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special)
    )
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    hf_dir = path / "hf"
    BertModel(config).save_pretrained(hf_dir)
    hf_tok.save_pretrained(hf_dir)
    transformer = models.Transformer(str(hf_dir), max_seq_length=128)
    pooling = models.Pooling(transformer.get_embedding_dimension(), "mean")
    model = SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu")
    out = path / "model"
    model.save(str(out))
    shutil.rmtree(hf_dir)
    return out


@pytest.fixture(scope="session")
def _tiny_model_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_tiny_model(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture
def tiny_model_path(_tiny_model_master: Path, tmp_path: Path) -> Path:
    """Path to a private copy of the tiny sentence-transformers model (tests may overwrite it)."""
    dst = tmp_path / "tiny-model"
    shutil.copytree(_tiny_model_master, dst)
    return dst


@pytest.fixture
def toy_nodes():
    """Eight TextNodes with stable ids and a bit of metadata."""
    from llama_index.core.schema import TextNode

    return [
        TextNode(id_=f"node-{i}", text=text, metadata={"file_name": f"doc{i % 2}.txt"})
        for i, text in enumerate(TOY_TEXTS)
    ]


@pytest.fixture
def seed_dir() -> Path:
    """../shared/data/seed10k, or skip when this clone has no ../shared beside it."""
    if not (SEED_DIR / "train_dataset.json").is_file():
        pytest.skip("../shared/data/seed10k is not present beside this clone")
    return SEED_DIR


# -- the CLI and the main job end to end: a tiny corpus and a local OpenAI-compatible server --

@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_docs(tmp_path / "docs")


@pytest.fixture
def server(monkeypatch):
    with FakeOpenAIServer(delay=0.0, fault_rate=0.0) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        monkeypatch.setenv("OPENAI_API_BASE", srv.url)
        yield srv


# -- real vector stores: PostgreSQL + pgvector (pgserver), Qdrant local, Chroma ---------------


@pytest.fixture(scope="session")
def pg_socket(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PostgreSQL server with pgvector for the session (the pgserver wheel, in a temp dir);
    its socket folder, for ``postgresql://postgres@/postgres?host=<it>&table=NAME``."""
    pgserver = pytest.importorskip("pgserver")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    uri = server.get_uri()
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    yield uri.split("host=", 1)[1]


@pytest.fixture
def pg_url(pg_socket: str, request: pytest.FixtureRequest):
    """``pg_url(table)``: a store URL of a table in the session's server, unique to the test."""
    prefix = "t" + str(abs(hash(request.node.nodeid)))[:10]

    def url(table: str, **options: str) -> str:
        extra = "".join(f"&{k}={v}" for k, v in options.items())
        return f"postgresql://postgres@/postgres?host={pg_socket}&table={prefix}_{table}{extra}"

    return url
