"""Vector stores named by a URL: read an index's chunks (and vectors) out, write a new index in.

One URL names a table or collection in PostgreSQL + pgvector, Qdrant or Chroma:

============================================================  ==================================
``postgresql://USER@HOST:PORT/DB?table=NAME``                  ``PGVectorStore(table_name=NAME)``
                                                               (its rows are in ``data_NAME``);
                                                               a socket folder as ``?host=/path``
``qdrant:PATH?collection=NAME``                                ``QdrantVectorStore``, local mode
``qdrant+http://HOST:PORT?collection=NAME``                    ``QdrantVectorStore``, a server
``chroma:PATH?collection=NAME``                                ``ChromaVectorStore``,
                                                               ``chromadb.PersistentClient``
============================================================  ==================================

A password is never written anywhere: give it in the environment (``PGPASSWORD``, or
``QDRANT_API_KEY`` for a Qdrant server); :attr:`StoreURL.redacted` is what records hold.

Reading goes through each store's own client page by page (LlamaIndex's ``get_nodes`` needs ids
or filters, or stops at 9,999 points); nodes come back as LlamaIndex wrote them
(``metadata_dict_to_node``: ids, text, metadata, relationships, excluded keys). Writing goes
through ``BasePydanticVectorStore.add`` in batches; ids already in the store are skipped, so an
interrupted write resumes with no duplicate and no gap (:func:`write_window_index`).
"""

from __future__ import annotations

import atexit
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from llama_index.core.schema import BaseNode

from llama_index_finetune_embed.serving.windows import WINDOW_OF, chunk_of, parent_id

logger = logging.getLogger(__name__)

StoreKind = Literal["postgres", "qdrant", "chroma"]

#: pgvector HNSW settings of a table this package writes (pgvector's defaults, cosine); queries
#: search ``ef_search`` candidates (recall@10 >= 0.99 against exact search, tests/test_stores.py).
HNSW = {"hnsw_m": 16, "hnsw_ef_construction": 64, "hnsw_ef_search": 100,
        "hnsw_dist_method": "vector_cosine_ops"}  # fmt: skip
#: Chunks per write step: their windows are one ``add`` call (one transaction in PostgreSQL).
WRITE_BATCH = 256
_FORMS = (
    "postgresql://USER@HOST:PORT/DB?table=NAME, qdrant:PATH?collection=NAME, "
    "qdrant+http://HOST:PORT?collection=NAME or chroma:PATH?collection=NAME"
)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: which store, where, and which table or collection.

    Example:
        >>> url = parse_store_url("postgresql://me:secret@db:5432/rag?table=chunks")
        >>> url.kind, url.name, url.redacted
        ('postgres', 'chunks', 'postgresql://me@db:5432/rag?table=chunks')
    """

    kind: StoreKind
    name: str  # the table (PGVectorStore's table_name) or the collection
    location: str  # a folder (local Qdrant, Chroma) or host:port
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    socket_dir: str | None = None
    hnsw: bool = True
    #: ``&text=once``: a chunk's text is stored with its first window only (see writing.py)
    text_once: bool = False

    @property
    def redacted(self) -> str:
        """The URL without any password: what records and reports hold."""
        once = "&text=once" if self.text_once else ""
        if self.kind == "postgres":
            user = f"{self.user}@" if self.user else ""
            query = f"?table={self.name}"
            query += f"&host={self.socket_dir}" if self.socket_dir else ""
            query += "" if self.hnsw else "&hnsw=off"
            return f"postgresql://{user}{self.location}/{self.database or ''}{query}{once}"
        if self.kind == "qdrant" and not self.is_local:  # location: http(s)://HOST:PORT
            return f"qdrant+{self.location}?collection={self.name}{once}"
        return f"{self.kind}:{self.location}?collection={self.name}{once}"

    @property
    def is_local(self) -> bool:
        """A store in a folder on this machine (Qdrant local mode, Chroma)."""
        return self.kind == "chroma" or (self.kind == "qdrant" and "://" not in self.location)


def parse_store_url(url: str) -> StoreURL:
    """A :class:`StoreURL`, or one ValueError naming what is wrong and the forms accepted."""
    text = str(url).strip()
    scheme, _, rest = text.partition(":")
    try:
        if scheme in ("postgresql", "postgres"):
            return _postgres(text)
        if scheme in ("qdrant", "chroma"):
            path, name, once = _path_and_collection(text, rest)
            name = _checked_name(scheme, name)
            return StoreURL(kind=scheme, name=name, location=str(Path(path).expanduser()),
                            text_once=once)  # fmt: skip
        if scheme == "qdrant+http" or scheme == "qdrant+https":
            parts = urlsplit(text)
            query = _options(parts.query, ("collection",))
            where = f"{scheme.split('+')[1]}://{parts.netloc}"
            return StoreURL(kind="qdrant", name=_one(query, "collection", text), location=where,
                            text_once=_text_once(query))  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"store URL {_safe(text)!r}: {exc}. Forms: {_FORMS}") from None
    raise ValueError(f"store URL {_safe(text)!r}: unknown kind {scheme!r}. Forms: {_FORMS}")


_PG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,57}$")  # PGVectorStore puts it in SQL as is
_CHROMA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")


def _checked_name(kind: str, name: str) -> str:
    if kind == "postgres" and not _PG_NAME.match(name):
        raise ValueError(f"table {name!r}: letters, digits and _ only, not starting with a digit")
    if kind == "chroma" and not _CHROMA_NAME.match(name):
        raise ValueError(
            f"collection {name!r}: Chroma wants 3-512 characters of letters, digits, '.', '_' "
            "and '-', starting and ending with a letter or digit"
        )
    return name


def _postgres(text: str) -> StoreURL:
    parts = urlsplit(text)
    query = _options(parts.query, ("table", "host", "hnsw"))
    database = parts.path.lstrip("/")
    if not database:
        raise ValueError("no database: put it after the host, e.g. postgresql://me@host:5432/rag")
    host = parts.hostname or ""
    location = f"{host}:{parts.port}" if parts.port else host
    hnsw = query.get("hnsw", ["on"])[0].lower() not in ("off", "0", "false", "no")
    return StoreURL(
        kind="postgres", name=_checked_name("postgres", _one(query, "table", text)),
        location=location,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        database=database, socket_dir=query.get("host", [None])[0], hnsw=hnsw,
        text_once=_text_once(query),
    )  # fmt: skip


def _path_and_collection(text: str, rest: str) -> tuple[str, str, bool]:
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        path = path[2:]
    if not path:
        raise ValueError("no folder: e.g. qdrant:./qdrant_data?collection=chunks")
    options = _options(query, ("collection",))
    return path, _one(options, "collection", text), _text_once(options)


def _options(query: str, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """The URL's query, with one error for an option it does not take."""
    options = parse_qs(query)
    unknown = set(options) - {*allowed, "text"}
    if unknown:
        takes = ", ".join((*allowed, "text"))
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} ({takes})")
    return options


def _text_once(options: dict[str, list[str]]) -> bool:
    value = options.get("text", ["every-window"])[0].lower()
    if value not in ("once", "every-window"):
        raise ValueError(f"text={value!r}: 'once' (with the first window) or 'every-window'")
    return value == "once"


def _one(query: dict[str, list[str]], key: str, text: str) -> str:
    values = query.get(key)
    if not values or not values[0].strip():
        raise ValueError(f"no ?{key}=NAME")
    return values[0].strip()


def _safe(text: str) -> str:
    """``text`` with the password of a URL replaced by ``***`` (for error messages)."""
    parts = urlsplit(text)
    if parts.password:
        return text.replace(f":{parts.password}@", ":***@", 1)
    return text


# -- opening ------------------------------------------------------------------------------------


class Store:
    """One table or collection: the LlamaIndex vector store over it and what it can be asked.

    Open with :func:`open_store`. ``vector_store`` is the LlamaIndex store (``PGVectorStore``,
    ``QdrantVectorStore``, ``ChromaVectorStore``) that indexes read and write through.
    """

    def __init__(
        self, url: StoreURL, vector_store: Any, handle: Any, *, existed: bool | None = None
    ) -> None:
        self.url, self.vector_store, self._handle = url, vector_store, handle
        #: whether the table or collection was there when the store was opened
        self.existed = self.exists() if existed is None else existed

    def exists(self) -> bool:
        """Whether the table or collection is there (with or without rows)."""
        url, handle = self.url, self._handle
        if url.kind == "postgres":
            import sqlalchemy

            table = self.vector_store._table_class.__tablename__  # "data_" + the table name
            schema = self.vector_store.schema_name
            return sqlalchemy.inspect(handle).has_table(table, schema=schema)
        if url.kind == "qdrant":
            return bool(handle.collection_exists(url.name))
        return url.name in {getattr(c, "name", c) for c in handle.list_collections()}

    def pages(self, size: int = 1000) -> Iterator[list[BaseNode]]:
        """Every entry, ``size`` at a time, with its vector (``node.embedding``)."""
        if self.url.kind == "postgres":
            yield from self._pg_pages(size)
        elif self.url.kind == "qdrant":
            offset = None
            while True:
                points, offset = self._handle.scroll(
                    self.url.name, limit=size, offset=offset, with_payload=True, with_vectors=True
                )
                if points:
                    yield self.vector_store.parse_to_query_result(points).nodes
                if offset is None:
                    return
        else:
            yield from self._chroma_pages(size)

    def _pg_pages(self, size: int) -> Iterator[list[BaseNode]]:
        from llama_index.core.vector_stores.utils import metadata_dict_to_node
        from sqlalchemy import select

        store = self.vector_store
        store._initialize()  # connects (perform_setup=False for a source: nothing is created)
        table, last = store._table_class, -1
        while True:
            stmt = (
                select(table.id, table.node_id, table.text, table.metadata_, table.embedding)
                .where(table.id > last).order_by(table.id).limit(size)
            )  # fmt: skip
            with store._session() as session:
                rows = session.execute(stmt).fetchall()
            if not rows:
                return
            page = []
            for row in rows:
                node = metadata_dict_to_node(row.metadata_, text=row.text)
                node.embedding = [float(x) for x in row.embedding]
                page.append(node)
            last = rows[-1].id
            yield page

    def _chroma_pages(self, size: int) -> Iterator[list[BaseNode]]:
        from llama_index.core.vector_stores.utils import metadata_dict_to_node

        collection, offset = self._handle.get_collection(self.url.name), 0
        while True:
            got = collection.get(
                limit=size, offset=offset, include=["documents", "metadatas", "embeddings"]
            )
            if not got["ids"]:
                return
            page = []
            for text, meta, vector in zip(
                got["documents"], got["metadatas"], got["embeddings"], strict=True
            ):
                node = metadata_dict_to_node(meta, text=text)
                node.embedding = [float(x) for x in vector]
                page.append(node)
            offset += len(page)
            yield page

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the store holds already."""
        if not ids:
            return set()
        if self.url.kind == "qdrant":
            if not self.exists():
                return set()
            points = self._handle.retrieve(self.url.name, list(ids), with_payload=False,
                                           with_vectors=False)  # fmt: skip
            return {str(p.id) for p in points}
        if self.url.kind == "chroma":
            got = self._handle.get_collection(self.url.name).get(ids=list(ids), include=[])
            return set(got["ids"])
        return {n.node_id for n in self.vector_store.get_nodes(node_ids=list(ids))}

    def count(self) -> int:
        """Entries in the table or collection (0 when it is not there)."""
        return sum(len(page) for page in self.pages()) if self.exists() else 0

    def prepare_write(self) -> None:
        """Before a write: in PostgreSQL, the table (the integration's own setup) and a unique
        index on ``node_id``, which ``PGVectorStore`` does not make: asking which ids are in
        already stays fast at a million rows, and no id can be stored twice."""
        if self.url.kind != "postgres":
            return
        from sqlalchemy import Index

        store = self.vector_store
        store._initialize()  # CREATE TABLE IF NOT EXISTS (no HNSW yet: see finish)
        table = store._table_class.__table__
        Index(f"{table.name}_node_id_key", table.c.node_id, unique=True).create(
            self._handle, checkfirst=True
        )

    def finish(self) -> None:
        """After a write: build what makes queries fast (pgvector's HNSW index, by the
        integration's own setup call; built once after the rows, not row by row)."""
        if self.url.kind == "postgres" and self.url.hnsw:
            indexed = _pg_store(self.url, dim=self.vector_store.embed_dim, hnsw=True, setup=True)
            indexed._initialize()  # CREATE INDEX IF NOT EXISTS ... USING hnsw

    def close(self) -> None:
        if self.url.kind == "postgres" and self._handle is not None:
            self._handle.dispose()


def open_store(url: str | StoreURL, *, write: bool = False, dim: int | None = None) -> Store:
    """The store ``url`` names. ``write=True`` creates the table or collection on first write
    (``dim``: the vectors' dimension, needed for PostgreSQL); a source is opened without setup,
    so nothing is created or written in it.

    Raises:
        ValueError: a malformed URL, or (to read) no such table or collection.
        ImportError: the store's extra is not installed (``postgres``, ``qdrant``, ``chroma``).

    Example:
        >>> store = open_store("qdrant:./qdrant_data?collection=chunks")  # doctest: +SKIP
        >>> VectorStoreIndex.from_vector_store(store.vector_store, embed_model=m)  # doctest: +SKIP
    """
    url = url if isinstance(url, StoreURL) else parse_store_url(url)
    if url.kind == "postgres":
        # a write builds its HNSW index once, after the rows (Store.finish)
        vector_store = _pg_store(url, dim=dim or 1, hnsw=url.hnsw and not write, setup=write)
        vector_store._connect()
        store = Store(url, vector_store, vector_store._engine)
    elif url.kind == "qdrant":
        store = _qdrant_store(url)
    else:
        store = _chroma_store(url, write=write)
    if not write and not store.existed:
        raise ValueError(f"{url.redacted}: no such {_thing(url)}")
    return store


def _thing(url: StoreURL) -> str:
    return "table" if url.kind == "postgres" else "collection"


def _needs(extra: str, package: str) -> ImportError:
    return ImportError(
        f"this store needs {package}: pip install 'llama-index-finetune-embed[{extra}]'"
    )


def _pg_store(url: StoreURL, *, dim: int, hnsw: bool, setup: bool) -> Any:
    try:
        from llama_index.vector_stores.postgres import PGVectorStore
        from sqlalchemy.engine import URL
    except ImportError:
        raise _needs("postgres", "llama-index-vector-stores-postgres") from None
    host, _, port = url.location.partition(":")
    query = {"host": url.socket_dir} if url.socket_dir else {}
    password = url.password  # else libpq reads PGPASSWORD
    sync = URL.create("postgresql+psycopg2", url.user, password, host or None,
                      int(port) if port else None, url.database, query)  # fmt: skip
    asyn = sync.set(drivername="postgresql+asyncpg")
    return PGVectorStore(
        connection_string=sync, async_connection_string=asyn, table_name=url.name,
        embed_dim=dim, perform_setup=setup, hnsw_kwargs=dict(HNSW) if hnsw else None,
    )  # fmt: skip


#: One client per local Qdrant folder: local mode locks its folder to one client per process.
_QDRANT_CLIENTS: dict[str, Any] = {}


def _qdrant_store(url: StoreURL) -> Store:
    try:
        from llama_index.vector_stores.qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient
    except ImportError:
        raise _needs("qdrant", "llama-index-vector-stores-qdrant") from None
    if url.is_local:
        key = str(Path(url.location).resolve())
        client = _QDRANT_CLIENTS.get(key)
        if client is None:
            if not _QDRANT_CLIENTS:
                atexit.register(_close_qdrant_clients)
            client = _QDRANT_CLIENTS[key] = QdrantClient(path=key)
    else:
        client = QdrantClient(url=url.location, api_key=os.environ.get("QDRANT_API_KEY"))
    return Store(url, QdrantVectorStore(client=client, collection_name=url.name), client)


def _close_qdrant_clients() -> None:
    """Close local clients before the interpreter tears down (their ``__del__`` fails then)."""
    for client in _QDRANT_CLIENTS.values():
        client.close()
    _QDRANT_CLIENTS.clear()


def _chroma_store(url: StoreURL, *, write: bool) -> Store:
    try:
        import chromadb
        from llama_index.vector_stores.chroma import ChromaVectorStore
    except ImportError:
        raise _needs("chroma", "llama-index-vector-stores-chroma") from None
    client = chromadb.PersistentClient(path=url.location)
    existed = url.name in {getattr(c, "name", c) for c in client.list_collections()}
    if not write and not existed:
        raise ValueError(f"{url.redacted}: no such collection")
    collection = client.get_or_create_collection(url.name, metadata={"hnsw:space": "cosine"})
    return Store(url, ChromaVectorStore(chroma_collection=collection), client, existed=existed)


# -- reading an index's chunks --------------------------------------------------------------------


def index_nodes(source: Any) -> list[BaseNode]:
    """The chunks of an existing index, exactly as it holds them, each once.

    ``source``: a store URL (see the module), a LlamaIndex persist dir whose docstore holds the
    nodes, a ``VectorStoreIndex``, a ``StorageContext`` or a vector store. Ids, text, metadata,
    relationships and excluded-metadata keys are kept; vectors are dropped
    (:func:`stored_vectors` reads them); the window entries of a ``build_window_index`` index
    come back as their chunk, once. Sorted by id, so the same index gives the same list.

    Raises:
        ValueError: the source holds no text nodes (e.g. a persist dir of an index whose text is
            in a vector store: pass the store's URL), or is not one of the kinds above.

    Example:
        >>> nodes = index_nodes("storage")  # VectorStoreIndex...storage_context.persist("storage")
        ... # doctest: +SKIP
        >>> nodes = index_nodes("postgresql://me@localhost:5432/rag?table=chunks")  # doctest: +SKIP
    """
    entries = list(_entries_of(source))
    nodes = _chunks(entries)
    if not nodes:
        from llama_index.core.schema import Document

        documents = sum(isinstance(e, Document) for e in entries)
        why = (
            f"its docstore holds {documents} documents and no nodes (an IngestionPipeline's "
            "docstore keeps its input documents): pass the index its nodes went into"
            if documents
            else "an index whose text lives in a vector store is read from the store: pass "
            "its URL"
        )
        raise ValueError(f"{_describe(source)} holds no text nodes to finetune on: {why}")
    return sorted(nodes, key=lambda n: n.node_id)


def stored_vectors(source: Any, chunk_ids: Iterable[str]) -> dict[str, list[list[float]]]:
    """chunk id -> the vectors ``source`` holds for it (one for a plain index; one per window
    for a ``build_window_index`` index), for the chunks asked; a chunk without one is left out."""
    wanted, out = set(chunk_ids), {}
    for node in _entries_of(source, vectors=True):
        pid = parent_id(node)
        if pid in wanted and node.embedding is not None:
            out.setdefault(pid, []).append(list(node.embedding))
    return out


def _entries_of(source: Any, *, vectors: bool = False) -> Iterator[BaseNode]:
    """Every entry of ``source`` (window entries included), with vectors when asked."""
    from llama_index.core import StorageContext
    from llama_index.core.indices.base import BaseIndex

    if isinstance(source, (str, os.PathLike)) and not Path(source).is_dir():
        store = open_store(str(source))
        try:
            for page in store.pages():
                yield from page
        finally:
            store.close()
        return
    if isinstance(source, (str, os.PathLike)):
        source = _storage_of(Path(source))
    if isinstance(source, BaseIndex):
        source = source.storage_context
    if isinstance(source, StorageContext):
        yield from _storage_entries(source, vectors)
        return
    if hasattr(source, "stores_text"):
        yield from _vector_store_entries(source)
        return
    raise TypeError(
        f"expected a store URL, a persist dir, an index, a StorageContext or a vector store; "
        f"got {type(source).__name__}"
    )


def _storage_of(folder: Path) -> Any:
    """A persist dir's docstore and, where it is there, its default vector store (no index
    store needed: an IngestionPipeline's ``persist`` writes the docstore alone)."""
    from llama_index.core import StorageContext
    from llama_index.core.storage.docstore import SimpleDocumentStore
    from llama_index.core.vector_stores import SimpleVectorStore

    if not (folder / "docstore.json").is_file():
        raise FileNotFoundError(
            f"{folder / 'docstore.json'} is missing: {folder} is not a LlamaIndex persist dir "
            "(index.storage_context.persist(folder) writes one)"
        )
    docstore = SimpleDocumentStore.from_persist_dir(str(folder))
    vectors = folder / "default__vector_store.json"
    vector_store = SimpleVectorStore.from_persist_path(str(vectors)) if vectors.is_file() else None
    return StorageContext.from_defaults(docstore=docstore, vector_store=vector_store)


def _storage_entries(storage: Any, vectors: bool) -> Iterator[BaseNode]:
    """A storage context's nodes (its docstore), with their vectors from its vector store."""
    docs = list(storage.docstore.docs.values())
    if not docs and storage.vector_store.stores_text:
        yield from _vector_store_entries(storage.vector_store)
        return
    table = _embedding_table(storage.vector_store) if vectors else {}
    for node in docs:
        if vectors and node.node_id in table:
            node = node.model_copy(update={"embedding": list(table[node.node_id])})
        yield node


def _embedding_table(vector_store: Any) -> dict[str, Any]:
    """id -> vector of a ``SimpleVectorStore`` (other stores without text: none known)."""
    data = getattr(vector_store, "data", None)
    return dict(getattr(data, "embedding_dict", {}) or {})


def _vector_store_entries(vector_store: Any) -> Iterator[BaseNode]:
    """The entries of a LlamaIndex vector store object of a kind this module opens."""
    url = _url_of(vector_store)
    if url is None:
        raise TypeError(
            f"{type(vector_store).__name__}: reading every node is supported for PGVectorStore, "
            "QdrantVectorStore and ChromaVectorStore (or pass the store's URL)"
        )
    handle = vector_store._engine if url.kind == "postgres" else _client_of(vector_store, url)
    for page in Store(url, vector_store, handle).pages():
        yield from page


def _url_of(vector_store: Any) -> StoreURL | None:
    kind = type(vector_store).__name__
    if kind == "PGVectorStore":
        vector_store._initialize()
        engine_url = vector_store._engine.url
        socket = engine_url.query.get("host")
        where = f"{engine_url.host or ''}:{engine_url.port}" if engine_url.port else ""
        return StoreURL(kind="postgres", name=vector_store.table_name, location=where,
                        user=engine_url.username, database=engine_url.database,
                        socket_dir=socket if isinstance(socket, str) else None)  # fmt: skip
    if kind == "QdrantVectorStore":
        return StoreURL(kind="qdrant", name=vector_store.collection_name, location="(client)")
    if kind == "ChromaVectorStore":
        return StoreURL(kind="chroma", name=vector_store._collection.name, location="(client)")
    return None


def _client_of(vector_store: Any, url: StoreURL) -> Any:
    if url.kind == "qdrant":
        return vector_store.client

    class _OneCollection:  # what Store asks of a chroma client, for the store's own collection
        def __init__(self, collection: Any) -> None:
            self.collection = collection

        def get_collection(self, name: str) -> Any:
            return self.collection

        def list_collections(self) -> list[str]:
            return [self.collection.name]

    return _OneCollection(vector_store._collection)


def _chunks(entries: Iterable[BaseNode]) -> list[BaseNode]:
    """Entries with every window entry replaced by its chunk, each chunk once (the chunk itself
    where the source holds it too), vectors dropped; documents and non-text nodes left out."""
    from llama_index.core.schema import Document, TextNode

    out: dict[str, BaseNode] = {}
    for entry in entries:
        if not isinstance(entry, TextNode) or isinstance(entry, Document):
            continue
        if WINDOW_OF in (entry.metadata or {}):  # the entry with the text wins (&text=once)
            have = out.get(parent_id(entry))
            if have is None or (not have.get_content() and entry.get_content()):
                out[parent_id(entry)] = chunk_of(entry)
        else:
            out[entry.node_id] = entry.model_copy(update={"embedding": None})
    return list(out.values())


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return _safe(str(source))
    return type(source).__name__
