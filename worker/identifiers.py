"""Identifiers in the keyword indexes: `to_dict` is held as one token as well as its words.

Why: FTS5's tokenizer splits `to_dict` into "to" and "dict", so an identifier lookup was a phrase query, and a
phrase is matched (and counted, for bm25's weight) by walking every row of each of its words. Identifiers often
hold the commonest words ("to", "from", "get", "is"): at 1M observations counting the phrase "from dict" (7,777
rows) walked the 614,285 rows of "from", 28 ms, and every statement matching it paid a share of that again. The
slowest searches of bench_search.py were identifier lookups.

So every text column an index holds (migration 17) ends with one token per identifier in it: the identifier's
words, lower-cased and joined by "_", in UTF-8 hex between an "i" and a "0" (one token for unicode61 whatever the
identifier holds, which the porter stemmer leaves alone: it ends in a digit; as storage.scope_token). A search
looks an identifier up by its token (`term`), a single doclist as short as the identifier is rare, which FtsCounter
counts with the other words. Its words stay in the text, so "dict" still finds `to_dict`. Snippets show the text
without the tokens (`strip`).

What it changes: an identifier query finds the identifier, not its words side by side in prose ("convert to
dict"); and `_to_wire`, `to_wire` and `to__wire` are one identifier, as they were one phrase. The neighbours'
text (`context`) holds no tokens: a row is found by an identifier its neighbours name only through its words.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

SQL_FUNCTION = "cm_indexed"  # what migration 17's triggers call on each text column (registered by `register`)
MAX_CHARS = 64  # a longer identifier gets no token (the search looks for its words as a phrase, as before)
_IDENT = re.compile(r"[^\W_]+(?:_+[^\W_]+)+")  # words joined by underscores, without leading or trailing ones
_RUNS = re.compile(r"_+")
_TOKEN = re.compile(r" ?\bi(?:[0-9A-F]{2})+0\b")


def _key(identifier: str) -> str | None:
    """The identifier's words as unicode61 reads them (lower case, no diacritics), joined by single "_"."""
    key = _RUNS.sub("_", identifier.lower())
    if not key.isascii():
        key = "".join(c for c in unicodedata.normalize("NFKD", key) if not unicodedata.combining(c))
    return key if len(key) <= MAX_CHARS else None


def _token(key: str) -> str:
    return f"i{key.encode().hex().upper()}0"


def term(word: str) -> str:
    """What a search looks for, for one query word (search.query_terms): an identifier's token, or the word."""
    found = _IDENT.fullmatch(word.strip("_"))
    key = _key(found.group()) if found else None
    return _token(key) if key else word


def indexed(text: str | None) -> str | None:
    """A column's text as an index holds it: the text, then one token per identifier in it (in order, repeats
    kept: bm25 counts them as it counted the phrase)."""
    if not text or "_" not in text:
        return text
    keys = [k for k in map(_key, _IDENT.findall(text)) if k]
    return f"{text} {' '.join(map(_token, keys))}" if keys else text


def strip(snippet: str) -> str:
    """A snippet without the tokens `indexed` added (they may fall inside its window, at the column's end)."""
    return _TOKEN.sub("", snippet) if "i" in snippet else snippet


def register(conn: sqlite3.Connection) -> None:
    """`cm_indexed(text)` on this connection: every connection that writes rows must have it (storage.connect)."""
    conn.create_function(SQL_FUNCTION, 1, indexed, deterministic=True)
