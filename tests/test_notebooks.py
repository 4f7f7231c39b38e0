"""LlamaIndex's two embedding-finetuning notebooks, run with this package in place of the reference.

The code cells of ``docs/docs/examples/finetuning/embeddings/finetune_embedding.ipynb`` and
``finetune_embedding_adapter.ipynb`` (run-llama/llama_index, with ``eval_utils.py`` next to them)
are transcribed below in order and executed in one namespace, as a kernel would. What changed,
each marked ``# was:`` in the cell:

- imports: ``llama_index.finetuning`` / ``llama_index.core.evaluation`` -> this package; that is
  the switch the README promises. Two imports point where llama-index-core 0.14 moved the
  classes (``llama_index.core.embeddings.{LinearAdapterEmbeddingModel,adapter_utils}`` ->
  ``llama_index.embeddings.adapter``): that holds for the reference too.
- data and models: the 10-K PDFs -> a small generated text corpus (52 train chunks, 12 val);
  ``BAAI/bge-small-en`` -> the packaged all-MiniLM-L6-v2 (also 384 dims); gpt-3.5-turbo -> the
  local OpenAI-compatible test server (``OPENAI_API_BASE``); the two-layer checkpoint loaded is
  ``step_100`` (the notebook's ``step_900`` needs its 10-K's size); ``OpenAIEmbedding`` ("ada")
  cells are left out (no embeddings endpoint offline).
- the environment: ``tqdm.notebook`` -> ``tqdm`` (no Jupyter widgets here); pandas 3 refuses
  ``mean("is_hit")``, so ``["is_hit"].mean()``; IPython's ``display`` is ``print``.
- the adapter notebook's own bugs: ``adapter_cls=CustomAdapter`` (undefined) -> ``CustomNN``,
  ``["ft_custom"]x`` -> ``["ft_custom"]``; its commented-out reload
  ``LinearAdapterEmbeddingModel(base_embed_model, "model_output_test")`` is run.

Everything else, the arguments included, runs as written.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

SUBJECTS = [
    "riders", "drivers", "insurance", "bikes", "scooters", "pricing", "safety", "payments",
    "airports", "deliveries", "freight", "maps", "support", "taxes", "leases", "vehicles",
]  # fmt: skip
ASPECTS = ["growth", "risk", "cost", "policy"]
EVENTS = ["a new city launch", "a regulatory review", "a pricing change", "a product recall"]


def _chunk(i: int) -> str:
    subject, aspect = SUBJECTS[i % len(SUBJECTS)], ASPECTS[(i // len(SUBJECTS)) % len(ASPECTS)]
    return (
        f"{subject.title()} {aspect} note number {i}. In {2000 + i} the {subject} team reported "
        f"that {aspect} moved by {3 * i + 1} percent after {EVENTS[i % len(EVENTS)]}. Managers "
        f"expect the {subject} {aspect} trend of note {i} to continue next year."
    )


@pytest.fixture
def notebook_env(tmp_path, monkeypatch):
    """A kernel's surroundings: cwd, data files, the OpenAI key and base URL, the base model."""
    from _fake_openai import FakeOpenAIServer

    from llama_index_finetune_embed.embeddings import packaged_minilm_path

    try:
        minilm = str(packaged_minilm_path())
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    for split, indices in (("train", range(52)), ("val", range(52, 64))):
        folder = tmp_path / "data" / split
        folder.mkdir(parents=True)
        for i in indices:
            (folder / f"note_{i:02d}.txt").write_text(_chunk(i) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with FakeOpenAIServer(delay=0.0, fault_rate=0.0) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        monkeypatch.setenv("OPENAI_API_BASE", server.url)
        ns = {
            "MINILM": minilm,
            "TRAIN": sorted(str(p) for p in (tmp_path / "data" / "train").iterdir()),
            "VAL": sorted(str(p) for p in (tmp_path / "data" / "val").iterdir()),
            "display": print,
        }
        yield ns, tmp_path
    from llama_index.core import Settings

    Settings._llm = None  # the adapter notebook's default LLM: ours to reset, not the next test's


def _run(cells: list[str], ns: dict) -> None:
    for i, source in enumerate(cells):
        exec(compile(source, f"<cell {i}>", "exec"), ns)  # noqa: S102 - the notebook's cells


CORPUS_CELLS = [
    """
import json

from llama_index.core import SimpleDirectoryReader
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode
""",
    """
TRAIN_FILES = TRAIN  # was: ["./data/10k/lyft_2021.pdf"]
VAL_FILES = VAL  # was: ["./data/10k/uber_2021.pdf"]

TRAIN_CORPUS_FPATH = "./data/train_corpus.json"
VAL_CORPUS_FPATH = "./data/val_corpus.json"
""",
    """
def load_corpus(files, verbose=False):
    if verbose:
        print(f"Loading files {files}")

    reader = SimpleDirectoryReader(input_files=files)
    docs = reader.load_data()
    if verbose:
        print(f"Loaded {len(docs)} docs")

    parser = SentenceSplitter()
    nodes = parser.get_nodes_from_documents(docs, show_progress=verbose)

    if verbose:
        print(f"Parsed {len(nodes)} nodes")

    return nodes
""",
    """
train_nodes = load_corpus(TRAIN_FILES, verbose=True)
val_nodes = load_corpus(VAL_FILES, verbose=True)
""",
]

FINETUNE_CELLS = [
    *CORPUS_CELLS,
    """
from llama_index_finetune_embed import generate_qa_embedding_pairs  # was: llama_index.finetuning
from llama_index_finetune_embed import EmbeddingQAFinetuneDataset  # was: ...core.evaluation
""",
    """
import os

OPENAI_API_KEY = "sk-"
os.environ["OPENAI_API_KEY"] = OPENAI_API_KEY
""",
    """
from llama_index.llms.openai import OpenAI


train_dataset = generate_qa_embedding_pairs(
    llm=OpenAI(model="gpt-3.5-turbo"),
    nodes=train_nodes,
    output_path="train_dataset.json",
)
val_dataset = generate_qa_embedding_pairs(
    llm=OpenAI(model="gpt-3.5-turbo"),
    nodes=val_nodes,
    output_path="val_dataset.json",
)
""",
    """
# [Optional] Load
train_dataset = EmbeddingQAFinetuneDataset.from_json("train_dataset.json")
val_dataset = EmbeddingQAFinetuneDataset.from_json("val_dataset.json")
""",
    """
from llama_index_finetune_embed import SentenceTransformersFinetuneEngine  # was: ...finetuning
""",
    """
finetune_engine = SentenceTransformersFinetuneEngine(
    train_dataset,
    model_id=MINILM,  # was: "BAAI/bge-small-en"
    model_output_path="test_model",
    val_dataset=val_dataset,
)
""",
    "finetune_engine.finetune()",
    "embed_model = finetune_engine.get_finetuned_model()",
    "embed_model",
    """
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import TextNode
from tqdm import tqdm  # was: from tqdm.notebook import tqdm
import pandas as pd
""",
    """
def evaluate(
    dataset,
    embed_model,
    top_k=5,
    verbose=False,
):
    corpus = dataset.corpus
    queries = dataset.queries
    relevant_docs = dataset.relevant_docs

    nodes = [TextNode(id_=id_, text=text) for id_, text in corpus.items()]
    index = VectorStoreIndex(
        nodes, embed_model=embed_model, show_progress=True
    )
    retriever = index.as_retriever(similarity_top_k=top_k)

    eval_results = []
    for query_id, query in tqdm(queries.items()):
        retrieved_nodes = retriever.retrieve(query)
        retrieved_ids = [node.node.node_id for node in retrieved_nodes]
        expected_id = relevant_docs[query_id][0]
        is_hit = expected_id in retrieved_ids  # assume 1 relevant doc

        eval_result = {
            "is_hit": is_hit,
            "retrieved": retrieved_ids,
            "expected": expected_id,
            "query": query_id,
        }
        eval_results.append(eval_result)
    return eval_results
""",
    """
from sentence_transformers.evaluation import InformationRetrievalEvaluator
from sentence_transformers import SentenceTransformer
from pathlib import Path


def evaluate_st(
    dataset,
    model_id,
    name,
):
    corpus = dataset.corpus
    queries = dataset.queries
    relevant_docs = dataset.relevant_docs

    evaluator = InformationRetrievalEvaluator(
        queries, corpus, relevant_docs, name=name
    )
    model = SentenceTransformer(model_id)
    output_path = "results/"
    Path(output_path).mkdir(exist_ok=True, parents=True)
    return evaluator(model, output_path=output_path)
""",
    """
bge = "local:" + MINILM  # was: "local:BAAI/bge-small-en"
bge_val_results = evaluate(val_dataset, bge)
""",
    "df_bge = pd.DataFrame(bge_val_results)",
    """
hit_rate_bge = df_bge["is_hit"].mean()
hit_rate_bge
""",
    'evaluate_st(val_dataset, MINILM, name="bge")  # was: "BAAI/bge-small-en"',
    """
finetuned = "local:test_model"
val_results_finetuned = evaluate(val_dataset, finetuned)
""",
    "df_finetuned = pd.DataFrame(val_results_finetuned)",
    """
hit_rate_finetuned = df_finetuned["is_hit"].mean()
hit_rate_finetuned
""",
    'evaluate_st(val_dataset, "test_model", name="finetuned")',
    """
df_bge["model"] = "bge"
df_finetuned["model"] = "fine_tuned"
""",
    """
df_all = pd.concat([df_bge, df_finetuned])  # was: [df_ada, df_bge, df_finetuned]
df_all.groupby("model")["is_hit"].mean()  # was: .mean("is_hit") (pandas 3 refuses it)
""",
    """
df_st_bge = pd.read_csv(
    "results/Information-Retrieval_evaluation_bge_results.csv"
)
df_st_finetuned = pd.read_csv(
    "results/Information-Retrieval_evaluation_finetuned_results.csv"
)
""",
    """
df_st_bge["model"] = "bge"
df_st_finetuned["model"] = "fine_tuned"
df_st_all = pd.concat([df_st_bge, df_st_finetuned])
df_st_all = df_st_all.set_index("model")
df_st_all
""",
]


def test_finetune_embedding_notebook(notebook_env):
    ns, cwd = notebook_env
    _run(FINETUNE_CELLS, ns)
    train = json.loads((cwd / "train_dataset.json").read_text())
    assert len(train["corpus"]) == 52 and len(train["queries"]) >= 52  # output_path= written
    assert isinstance(ns["finetune_engine"].model_output_path, str)
    assert (cwd / "test_model" / "metrics.json").is_file()
    assert 0.0 <= ns["hit_rate_bge"] <= 1.0 and 0.0 <= ns["hit_rate_finetuned"] <= 1.0
    assert len(ns["df_st_all"]) == 2


EVAL_UTILS_CELL = '''
# eval_utils.py, next to the notebook (imported there with `from eval_utils import ...`)
from llama_index.core.schema import TextNode
from llama_index.core import Settings
from llama_index.core import VectorStoreIndex
import pandas as pd
from tqdm import tqdm


def evaluate(
    dataset,
    embed_model,
    top_k=5,
    verbose=False,
):
    corpus = dataset.corpus
    queries = dataset.queries
    relevant_docs = dataset.relevant_docs

    embed_model = embed_model or Settings.embed_model
    nodes = [TextNode(id_=id_, text=text) for id_, text in corpus.items()]
    index = VectorStoreIndex(
        nodes, embed_model=embed_model, show_progress=True
    )
    retriever = index.as_retriever(similarity_top_k=top_k)

    eval_results = []
    for query_id, query in tqdm(queries.items()):
        retrieved_nodes = retriever.retrieve(query)
        retrieved_ids = [node.node.node_id for node in retrieved_nodes]
        expected_id = relevant_docs[query_id][0]

        rank = None
        for idx, id in enumerate(retrieved_ids):
            if id == expected_id:
                rank = idx + 1
                break

        is_hit = rank is not None  # assume 1 relevant doc
        mrr = 0 if rank is None else 1 / rank

        eval_result = {
            "is_hit": is_hit,
            "mrr": mrr,
            "retrieved": retrieved_ids,
            "expected": expected_id,
            "query": query_id,
        }
        eval_results.append(eval_result)
    return eval_results


def display_results(names, results_arr):
    """Display results from evaluate."""

    hit_rates = []
    mrrs = []
    for name, results in zip(names, results_arr):
        results_df = pd.DataFrame(results)
        hit_rate = results_df["is_hit"].mean()
        mrr = results_df["mrr"].mean()
        hit_rates.append(hit_rate)
        mrrs.append(mrr)

    final_df = pd.DataFrame(
        {"retrievers": names, "hit_rate": hit_rates, "mrr": mrrs}
    )
    display(final_df)
'''

ADAPTER_CELLS = [
    EVAL_UTILS_CELL,
    *CORPUS_CELLS,
    """
from llama_index_finetune_embed import generate_qa_embedding_pairs  # was: llama_index.finetuning
from llama_index_finetune_embed import EmbeddingQAFinetuneDataset  # was: ...core.evaluation
""",
    """
train_dataset = generate_qa_embedding_pairs(train_nodes)
val_dataset = generate_qa_embedding_pairs(val_nodes)

train_dataset.save_json("train_dataset.json")
val_dataset.save_json("val_dataset.json")
""",
    """
# [Optional] Load
train_dataset = EmbeddingQAFinetuneDataset.from_json("train_dataset.json")
val_dataset = EmbeddingQAFinetuneDataset.from_json("val_dataset.json")
""",
    """
from llama_index_finetune_embed import EmbeddingAdapterFinetuneEngine  # was: ...finetuning
from llama_index.core.embeddings import resolve_embed_model
import torch

base_embed_model = resolve_embed_model("local:" + MINILM)  # was: "local:BAAI/bge-small-en"

finetune_engine = EmbeddingAdapterFinetuneEngine(
    train_dataset,
    base_embed_model,
    model_output_path="model_output_test",
    # bias=True,
    epochs=4,
    verbose=True,
    # optimizer_class=torch.optim.SGD,
    # optimizer_params={"lr": 0.01}
)
""",
    "finetune_engine.finetune()",
    """
embed_model = finetune_engine.get_finetuned_model()

# alternatively import model
from llama_index.embeddings.adapter import LinearAdapterEmbeddingModel  # was: ...core.embeddings

# was commented out, and assigned to embed_model
embed_model_reloaded = LinearAdapterEmbeddingModel(base_embed_model, "model_output_test")
""",
    "# from eval_utils import evaluate, display_results  (the eval_utils cell above)",
    """
bge = "local:" + MINILM  # was: "local:BAAI/bge-small-en"
bge_val_results = evaluate(val_dataset, bge)
""",
    'display_results(["bge"], [bge_val_results])',
    "ft_val_results = evaluate(val_dataset, embed_model)",
    'display_results(["ft"], [ft_val_results])',
    'display_results(["bge", "ft"], [bge_val_results, ft_val_results])  # was: with "ada"',
    """
# requires torch dependency
from llama_index.embeddings.adapter.utils import TwoLayerNN  # was: ...core.embeddings.adapter_utils

from llama_index_finetune_embed import EmbeddingAdapterFinetuneEngine  # was: ...finetuning
from llama_index.core.embeddings import resolve_embed_model
from llama_index.embeddings.adapter import AdapterEmbeddingModel
""",
    """
base_embed_model = resolve_embed_model("local:" + MINILM)  # was: "local:BAAI/bge-small-en"
adapter_model = TwoLayerNN(
    384,  # input dimension
    1024,  # hidden dimension
    384,  # output dimension
    bias=True,
    add_residual=True,
)

finetune_engine = EmbeddingAdapterFinetuneEngine(
    train_dataset,
    base_embed_model,
    model_output_path="model5_output_test",
    model_checkpoint_path="model5_ck",
    adapter_model=adapter_model,
    epochs=25,
    verbose=True,
)
""",
    "finetune_engine.finetune()",
    """
embed_model_2layer = finetune_engine.get_finetuned_model(
    adapter_cls=TwoLayerNN
)
""",
    """
# load model from checkpoint in the midde
embed_model_2layer = AdapterEmbeddingModel(
    base_embed_model,
    "model5_output_test",
    TwoLayerNN,
)
""",
    "ft_val_results_2layer = evaluate(val_dataset, embed_model_2layer)",
    """
# comment out if you haven't run ada/bge yet
display_results(
    ["bge", "ft_2layer"],  # was: with "ada"
    [bge_val_results, ft_val_results_2layer],
)
""",
    """
# load model from checkpoint in the midde
embed_model_2layer_s900 = AdapterEmbeddingModel(
    base_embed_model,
    "model5_ck/step_100",  # was: "model5_ck/step_900"
    TwoLayerNN,
)
""",
    "ft_val_results_2layer_s900 = evaluate(val_dataset, embed_model_2layer_s900)",
    """
from llama_index.embeddings.adapter import BaseAdapter  # was: ...core.embeddings.adapter_utils
import torch.nn.functional as F
from torch import nn, Tensor
from typing import Dict
""",
    '''
class CustomNN(BaseAdapter):
    """Custom NN transformation.

    Is a copy of our TwoLayerNN, showing it here for notebook purposes.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        bias: bool = False,
        add_residual: bool = False,
    ) -> None:
        super(CustomNN, self).__init__()
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.out_features = out_features
        self.bias = bias

        self.linear1 = nn.Linear(in_features, hidden_features, bias=True)
        self.linear2 = nn.Linear(hidden_features, out_features, bias=True)
        self._add_residual = add_residual
        # if add_residual, then add residual_weight (init to 0)
        self.residual_weight = nn.Parameter(torch.zeros(1))

    def forward(self, embed: Tensor) -> Tensor:
        """Forward pass (Wv)."""
        output1 = self.linear1(embed)
        output1 = F.relu(output1)
        output2 = self.linear2(output1)

        if self._add_residual:
            output2 = self.residual_weight * output2 + embed

        return output2

    def get_config_dict(self) -> Dict:
        """Get config dict."""
        return {
            "in_features": self.in_features,
            "hidden_features": self.hidden_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "add_residual": self._add_residual,
        }
''',
    """
custom_adapter = CustomNN(
    384,  # input dimension
    1024,  # hidden dimension
    384,  # output dimension
    bias=True,
    add_residual=True,
)

finetune_engine = EmbeddingAdapterFinetuneEngine(
    train_dataset,
    base_embed_model,
    model_output_path="custom_model_output",
    model_checkpoint_path="custom_model_ck",
    adapter_model=custom_adapter,
    epochs=25,
    verbose=True,
)
""",
    "finetune_engine.finetune()",
    """
embed_model_custom = finetune_engine.get_finetuned_model(
    adapter_cls=CustomNN  # was: CustomAdapter (undefined in the notebook)
)
""",
    "ft_val_results_custom = evaluate(val_dataset, embed_model_custom)",
    'display_results(["ft_custom"], [ft_val_results_custom])  # was: ["ft_custom"]x',
]


def test_finetune_embedding_adapter_notebook(notebook_env):
    import numpy as np

    ns, cwd = notebook_env
    _run(ADAPTER_CELLS, ns)
    query = "What did the riders team report?"
    np.testing.assert_allclose(  # the library's loader embeds queries as our model does
        ns["embed_model"].get_query_embedding(query),
        ns["embed_model_reloaded"].get_query_embedding(query),
        atol=1e-6,
    )
    for folder in ("model_output_test", "model5_output_test", "custom_model_output"):
        assert (cwd / folder / "config.json").is_file()
        assert (cwd / folder / "pytorch_model.bin").is_file()
    assert sorted(p.name for p in (cwd / "model5_ck").iterdir()) == ["step_100"]
    assert type(ns["embed_model_custom"].adapter).__name__ == "CustomNN"
    for name in ("ft_val_results", "ft_val_results_2layer", "ft_val_results_custom"):
        assert len(ns[name]) == len(ns["val_dataset"].queries)
