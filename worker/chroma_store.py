"""The Chroma collection: documents in, nearest documents out, embedded or on a Chroma server.

`vectors.VectorSync` decides what to send and when; this module only talks to Chroma, with the
offline embedding model (a server needs no model) and bounded HTTP timeouts.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from worker.settings import Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from worker.embeddings import Embedder

log = logging.getLogger("claude_mem.vectors")

COLLECTION = "claude_mem"
# How rows become vectors. A collection built under another scheme (or before schemes were recorded) is
# dropped and rebuilt from SQLite by the sync, so search never compares vectors made two ways.
# 2: every document embedded in full, as chunks of at most 128 tokens (ids `<doc id>` then `<doc id>-c<n>`),
#    instead of one vector of its first 256 tokens. 3: chunks of at most 96 tokens (CHUNK_TOKENS).
# 4: every chunk also in its project's collection (`<collection>-p<digest>`, see `partition_name`), which answers
#    the searches scoped to a project. Chroma's `where` cost grows with the whole collection (a project filter
#    took 70 ms at 254k vectors, 1.5 s for one matching everything), a project's own collection answers in a
#    millisecond or two; a search of all projects asks the store-wide collection, one query.
# 5: a short observation (one chunk) also gets a second vector, `<doc id>-ctx`, of its text between the text of
#    the observations just before and after it in its session (Doc.before/after); the stored document is its own.
EMBEDDING_SCHEME = 5
HTTP_TIMEOUT_SECONDS = 30.0
# Query vectors kept for repeated searches (paging, a viewer re-running its search box, an agent asking
# twice, timeline?query after search): embedding is about a third of a hybrid search's CPU.
QUERY_CACHE_SIZE = 256
# Collections are listed again (another worker on a shared Chroma server may have added projects) at most this often.
PARTITION_LIST_SECONDS = 10.0


@dataclass
class Doc:
    id: str
    text: str
    metadata: dict[str, str | int | float | bool]
    # Context read with the text but not stored as it: what comes before and after it (its session neighbours).
    before: str = ""
    after: str = ""

    @property
    def embedded_text(self) -> str:
        """What the model reads for this document: its text between its context."""
        return "\n".join(p for p in (self.before, self.text, self.after) if p)


@dataclass
class SemanticHit:
    kind: str
    row_id: int
    distance: float
    doc_id: str
    document: str = ""

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


def rows_where(kind: str, row_ids: list[int]) -> dict[str, Any]:
    """The Chroma filter for every document (field, chunk) the given rows own."""
    return {"$and": [{"kind": kind}, {"sqlite_id": {"$in": [int(r) for r in row_ids]}}]}


def partition_name(base: str, project: str) -> str:
    """A project's collection: Chroma's names allow only [a-zA-Z0-9._-], so the project is a digest."""
    return f"{base}-p{hashlib.sha256(project.encode()).hexdigest()[:20]}"


class StoreView:
    """The projects' collections of a store read as one, from any Chroma client (tests and tools that check
    that they hold what the store-wide collection holds)."""

    def __init__(self, client: Any, base: str = COLLECTION) -> None:
        prefix = f"{base}-p"
        self.collections = [
            client.get_collection(c.name) for c in client.list_collections() if c.name.startswith(prefix)
        ]

    def count(self) -> int:
        return sum(c.count() for c in self.collections)

    def get(self, **kwargs: Any) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"ids": [], "metadatas": [], "documents": []}
        for collection in self.collections:
            got = collection.get(**kwargs)
            for key in out:
                out[key].extend(got.get(key) or [])
        return out


def by_project(chunks: list[Doc]) -> dict[str, list[int]]:
    """The chunks' positions, grouped by project: what goes into each project's collection."""
    out: dict[str, list[int]] = {}
    for i, chunk in enumerate(chunks):
        out.setdefault(str(chunk.metadata.get("project", "")), []).append(i)
    return out


def parse_doc_id(doc_id: str) -> tuple[str, int] | None:
    head, _, rest = doc_id.partition("-")
    number = rest.split("-", 1)[0]
    kind = {"obs": "observation", "sum": "summary", "prompt": "prompt"}.get(head)
    if kind is None or not number.isdigit():
        return None
    return kind, int(number)


def _default_embedder() -> Embedder:
    from worker.embeddings import default_embedder

    return default_embedder()


class ChromaStore:
    """The `claude_mem` collection, opened lazily and reopened after a failure.

    Embedded (`PersistentClient` under the data dir) unless CLAUDE_MEM_CHROMA_URL names a server.
    Embeddings are always computed here, by the offline model, so a server needs no model.
    """

    def __init__(self, settings: Settings, embedder: Embedder | None = None, collection: str = COLLECTION) -> None:
        self.url = settings.chroma_url
        self.collection_name = collection
        self.mode = "http" if self.url else "embedded"
        self.path = settings.data_dir / "chroma"
        self._embedder = embedder
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()
        self._query_vectors: collections.OrderedDict[str, list[float]] = collections.OrderedDict()
        self._client: ClientAPI | None = None
        self._collection: Collection | None = None
        self._partitions: dict[str, Collection] = {}  # by collection name
        self._listed_at = 0.0
        self._loaded: set[str | None] = set()  # projects whose index a call here has read (None: the store-wide one)

    @property
    def location(self) -> str:
        return self.url if self.mode == "http" else str(self.path)

    def _open_client(self) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if self.mode == "embedded":
            self.path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(self.path), settings=chroma_settings)
        # chromadb talks through httpx, which logs every request at INFO: a heartbeat every few
        # seconds would drown the worker's log.
        httpx_log = logging.getLogger("httpx")
        if httpx_log.getEffectiveLevel() < logging.WARNING:
            httpx_log.setLevel(logging.WARNING)
        parsed = urlparse(self.url if "://" in self.url else f"http://{self.url}")
        ssl = parsed.scheme == "https"
        # chromadb's client has no timeout and talks to the server while it is constructed: probe
        # first, so an unroutable URL fails in seconds instead of hanging the sync thread.
        import httpx

        base = f"{parsed.scheme or 'http'}://{parsed.netloc}"
        httpx.get(f"{base}/api/v2/heartbeat", timeout=httpx.Timeout(10.0, connect=5.0)).raise_for_status()
        client = chromadb.HttpClient(
            host=parsed.hostname or "localhost",
            port=parsed.port or (443 if ssl else 8000),
            ssl=ssl,
            settings=chroma_settings,
        )
        _bound_http_timeout(client)
        return client

    def collection(self) -> Collection:
        """The store-wide collection (every project's chunks; it records the embedding scheme)."""
        with self._lock:
            if self._collection is None:
                self._collection = self._create(self.collection_name, {})
            return self._collection

    def _create(self, name: str, metadata: dict[str, Any]) -> Collection:
        from worker.embeddings import MiniLMEmbeddingFunction

        client = self._client or self._open_client()
        self._client = client
        return client.get_or_create_collection(
            name,
            embedding_function=MiniLMEmbeddingFunction(self._embedder or _default_embedder()),  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"source": "claude-mem-worker", "scheme": EMBEDDING_SCHEME, **metadata},
        )

    def partition(self, project: str) -> Collection:
        """The project's collection, created on first use."""
        self.collection()
        name = partition_name(self.collection_name, project)
        with self._lock:
            found = self._partitions.get(name)
            if found is None:
                found = self._partitions[name] = self._create(name, {"project": project})
            return found

    def existing_partition(self, project: str) -> Collection | None:
        """The project's collection if it exists: reads (searches, index loads) never create one, so a search or
        a session start naming any project leaves no empty collection behind."""
        from chromadb.errors import NotFoundError

        self.collection()
        name = partition_name(self.collection_name, project)
        with self._lock:
            found = self._partitions.get(name)
            if found is None:
                try:
                    found = self._partitions[name] = self._existing(name)
                except NotFoundError:
                    return None
            return found

    def _existing(self, name: str) -> Collection:
        """A collection that exists (chromadb's NotFoundError otherwise), with the store's embedding function."""
        from worker.embeddings import MiniLMEmbeddingFunction

        assert self._client is not None
        return self._client.get_collection(
            name,
            embedding_function=MiniLMEmbeddingFunction(self._embedder or _default_embedder()),  # type: ignore[arg-type]
        )

    def partitions(self, refresh: bool = False) -> list[Collection]:
        """Every project's collection (listed again now and then: another worker may have added one)."""
        self.collection()
        with self._lock:
            if refresh or time.monotonic() - self._listed_at > PARTITION_LIST_SECONDS:
                assert self._client is not None
                prefix = f"{self.collection_name}-p"
                names = [c.name for c in self._client.list_collections() if c.name.startswith(prefix)]
                for name in names:
                    if name not in self._partitions:
                        self._partitions[name] = self._existing(name)
                for name in set(self._partitions) - set(names):
                    del self._partitions[name]
                self._listed_at = time.monotonic()
            return list(self._partitions.values())

    def scheme(self) -> int:
        """The embedding scheme the collection's vectors were made with (1: before schemes were recorded)."""
        metadata = self.collection().metadata or {}
        value = metadata.get("scheme", 1)
        return value if isinstance(value, int) else 1

    def warm(self) -> None:
        """Import chromadb and load the embedding model now: both hold the GIL for long stretches, which on a
        serving worker stalls every hook post behind them (the worker calls this before its port opens)."""
        import chromadb  # noqa: F401

        (self._embedder or _default_embedder()).load()

    def load(self, project: str | None = None) -> None:
        """Read a collection's search index into memory now (None: the store-wide one). Chroma reads an index at
        the collection's first use: at a million observations that took 8-15 s for the store-wide one on 2 cores (30 s
        beside other work), and a search should not be the call that waits for it."""
        place = self.existing_partition(project) if project is not None else self.collection()
        # chromadb 1.x reads the index at `count` already; a search for a stored vector makes sure of it.
        if place is not None and place.count():
            stored = place.get(limit=1, include=["embeddings"])  # type: ignore[list-item]
            vectors = stored.get("embeddings")
            if vectors is not None and len(vectors):
                place.query(query_embeddings=[list(vectors[0])], n_results=1, include=[])  # type: ignore[arg-type, list-item]
        with self._lock:
            self._loaded.add(project)

    def loaded(self, project: str | None = None) -> bool:
        """Whether a call here has read the collection's index (so a search of it does not wait for a load)."""
        return project in self._loaded

    def close(self) -> None:
        """Release what the store holds outside this process (the child of `vector_process`); nothing here."""

    def reset(self) -> None:
        """Forget the collection handles (they may name collections a restarted server no longer has)."""
        with self._lock:
            self._collection = None
            self._partitions = {}
            self._listed_at = 0.0
            self._loaded = set()

    def heartbeat(self) -> None:
        self.collection()
        assert self._client is not None
        self._client.heartbeat()

    def embedder(self) -> Embedder:
        return self._embedder or _default_embedder()

    def chunks(self, docs: list[Doc]) -> list[Doc]:
        """Each document as the chunks its whole text is embedded as (the first keeps the document's id).

        A one-chunk document with context also gets a context chunk (`<id>-ctx`): the same text read between its
        neighbours, so a bare reply is found by what it answers. Its own vector stays, and search takes a row's
        best vector, so a row is never judged by its neighbours' words alone.
        """
        out: list[Doc] = []
        embedder = self.embedder()
        for doc in docs:
            parts = embedder.split(doc.text)
            for n, text in enumerate(parts):
                out.append(Doc(doc.id if n == 0 else f"{doc.id}-c{n}", text, {**doc.metadata, "chunk": n}))
            if len(parts) == 1 and (doc.before or doc.after):
                out.append(Doc(f"{doc.id}-ctx", parts[0], {**doc.metadata, "chunk": 1}, doc.before, doc.after))
        return out

    def upsert(self, docs: list[Doc]) -> list[str]:
        """Store the documents as their chunks; returns the chunk ids stored. Each chunk is embedded once (with
        its context)."""
        chunks = self.chunks(docs)
        if chunks:
            self.store_vectors(chunks, self.embedder().embed([d.embedded_text for d in chunks]))
        return [d.id for d in chunks]

    def store_vectors(self, chunks: list[Doc], vectors: Any) -> None:
        """Chunks with their vectors (one row each) into the store-wide collection and their project's:
        embedded once, stored twice."""
        self.collection().upsert(
            ids=[d.id for d in chunks],
            embeddings=vectors,
            documents=[d.text for d in chunks],
            metadatas=[d.metadata for d in chunks],  # type: ignore[misc]
        )
        for project, picked in by_project(chunks).items():
            self.partition(project).upsert(
                ids=[chunks[i].id for i in picked],
                embeddings=vectors[picked],
                documents=[chunks[i].text for i in picked],
                metadatas=[chunks[i].metadata for i in picked],  # type: ignore[misc]
            )

    def ids_of(self, kind: str, row_ids: list[int], project: str | None = None) -> list[str]:
        """The ids of every document Chroma holds for these rows (looked up in the project's collection, which
        is smaller, when the project is known)."""
        if not row_ids:
            return []
        place = self.partition(project) if project is not None else self.collection()
        return list(place.get(where=rows_where(kind, row_ids), include=[])["ids"])  # type: ignore[arg-type]

    def delete(self, ids: list[str], project: str | None = None) -> None:
        if ids:
            self.collection().delete(ids=ids)
            for c in [self.partition(project)] if project is not None else self.partitions(refresh=True):
                c.delete(ids=ids)

    def projects_of(self, kind: str, row_ids: list[int]) -> list[str]:
        """The projects whose collections hold these rows' documents, from the store-wide collection."""
        if not row_ids:
            return []
        found = self.collection().get(where=rows_where(kind, row_ids), include=["metadatas"])  # type: ignore[arg-type, list-item]
        return sorted({str(m.get("project", "")) for m in found.get("metadatas") or [] if m})

    def delete_rows(self, kind: str, row_ids: list[int], projects: list[str] | None = None) -> None:
        """Remove every document (fields, chunks) of these rows: from their projects' collections (`projects_of`
        unless given), then the store-wide one, which a retry after a failure between the two still finds them in.
        Only those projects': a delete opens a collection's index, and at a million observations opening all 40
        took the vector child past 10 GB for one deleted row."""
        if row_ids:
            where = rows_where(kind, row_ids)
            for project in self.projects_of(kind, row_ids) if projects is None else projects:
                self.partition(project).delete(where=where)  # type: ignore[arg-type]
            self.collection().delete(where=where)  # type: ignore[arg-type]

    def count(self) -> int:
        return self.collection().count()

    def drop(self) -> None:
        """Delete every collection of this store (rebuild); the next call recreates them empty."""
        self.collection()
        with self._lock:
            assert self._client is not None
            prefix = f"{self.collection_name}-p"
            names = [c.name for c in self._client.list_collections() if c.name.startswith(prefix)]
            for name in [*names, self.collection_name]:
                try:
                    self._client.delete_collection(name)
                except Exception as exc:  # already gone is fine
                    log.debug("delete_collection %s: %s", name, exc)
            self._collection = None
            self._partitions = {}
            self._listed_at = 0.0
            self._loaded = set()

    def query(
        self, text: str, n: int, where: dict[str, Any] | None = None, project: str | None = None
    ) -> list[SemanticHit]:
        """The n nearest documents: in the project's collection, or in the store-wide one without a project."""
        if n <= 0:
            return []
        place = self.existing_partition(project) if project is not None else self.collection()
        if place is None:  # no document of that project was ever stored
            return []
        result = place.query(
            query_embeddings=[self.query_vector(text)],  # type: ignore[arg-type]
            n_results=n,
            where=where,
            include=["distances", "documents"],  # type: ignore[list-item]
        )
        ids = (result.get("ids") or [[]])[0]
        distances = (result.get("distances") or [[]])[0]
        texts = (result.get("documents") or [[]])[0] or [""] * len(ids)
        hits: list[SemanticHit] = []
        for doc_id, distance, document in zip(ids, distances, texts, strict=False):
            parsed = parse_doc_id(doc_id)
            if parsed:
                hits.append(SemanticHit(parsed[0], parsed[1], float(distance), doc_id, document or ""))
        self._loaded.add(project)
        return hits

    def query_vector(self, text: str) -> list[float]:
        """The query's embedding, from a small LRU cache when the same text was asked recently."""
        with self._query_lock:
            found = self._query_vectors.get(text)
            if found is not None:
                self._query_vectors.move_to_end(text)
                return found
        vector = [float(x) for x in self.embedder().embed([text])[0]]
        with self._query_lock:
            self._query_vectors[text] = vector
            while len(self._query_vectors) > QUERY_CACHE_SIZE:
                self._query_vectors.popitem(last=False)
        return vector

    def forget_queries(self) -> None:
        with self._query_lock:
            self._query_vectors.clear()


def _bound_http_timeout(client: Any) -> None:
    """chromadb's HTTP client waits forever by default; a hung server must not hang a search."""
    try:
        import httpx

        session = client._server._session  # private, hence best effort
        session.timeout = httpx.Timeout(HTTP_TIMEOUT_SECONDS, connect=5.0)
    except Exception:
        log.debug("could not bound the Chroma HTTP timeout", exc_info=True)
