"""Identifiers in the keyword indexes: `to_dict` is held as one token as well as its words.

Why: FTS5's tokenizer splits `to_dict` into "to" and "dict", so an identifier lookup was a phrase query, and a
phrase is matched (and counted, for bm25's weight) by walking every row of each of its words. Identifiers often
hold the commonest words ("to", "from", "get", "is"): at 1M observations counting the phrase "from dict" (7,777
rows) walked the 614,285 rows of "from", 28 ms, and every statement matching it paid a share of that again. The
slowest searches of bench_search.py were identifier lookups.

So every text column an index holds (migration 17) ends with one token per identifier in it, and per run of two
or more of its words (`user_code_generator` holds `user_code`, as the phrase matched inside it): the words,
lower-cased and joined by "_", in UTF-8 hex between an "i" and a "0" (one token for unicode61 whatever the
identifier holds, which the porter stemmer leaves alone: it ends in a digit; as storage.scope_token). A search
looks an identifier up by its token (`term`), a single doclist as short as the identifier is rare, which FtsCounter
counts with the other words. Its words stay in the text, so "dict" still finds `to_dict`. Snippets show the text
without the tokens (`strip`).

What it changes: an identifier query finds the identifier, inside longer ones too, but not its words side by side
in prose ("convert to dict"); and `_to_wire`, `to_wire` and `to__wire` are one identifier, as they were one
phrase. The neighbours' text (`context`) holds no tokens: a row is found by an identifier its neighbours name
only through its words.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

SQL_FUNCTION = "cm_indexed"  # what migration 17's triggers call on each text column (registered by `register`)
MAX_CHARS = 64  # a longer identifier gets no token (the search looks for its words as a phrase, as before)
MAX_WORDS = 8  # runs of at most this many words get a token (a longer identifier is looked for as a phrase too)
MAX_TOKENS = 2000  # tokens added to one column's text at most (a 6,000-character narrative holds a few hundred)
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
    return _token(key) if key and key.count("_") < MAX_WORDS else word  # (as `_parts` holds them)


def _parts(identifier: str) -> list[str]:
    """The keys of an identifier and of each run of two or more of its words (up to MAX_WORDS words and MAX_CHARS
    characters): `user_code_generator` holds `user_code` and `code_generator` too, as the phrase "user code" matched
    inside it."""
    words = _RUNS.split(identifier)
    keys = []
    for i, first in enumerate(words):
        length = len(first)
        for j in range(i + 1, min(len(words), i + MAX_WORDS)):
            length += 1 + len(words[j])
            if length > MAX_CHARS:
                break
            key = _key("_".join(words[i : j + 1]))
            if key:
                keys.append(key)
        if len(keys) >= MAX_TOKENS:
            break
    return keys


def indexed(text: str | None) -> str | None:
    """A column's text as an index holds it: the text, then one token per identifier in it and per run of its
    words (`_parts`), in order, repeats kept: bm25 counts them as it counted the phrase."""
    if not text or "_" not in text:
        return text
    keys: list[str] = []
    for found in _IDENT.finditer(text):
        keys.extend(_parts(found.group()))
        if len(keys) >= MAX_TOKENS:  # (a pasted blob of identifiers adds a bounded number of tokens)
            del keys[MAX_TOKENS:]
            break
    return f"{text} {' '.join(map(_token, keys))}" if keys else text


def strip(snippet: str) -> str:
    """A snippet without the tokens `indexed` added (they may fall inside its window, at the column's end)."""
    return _TOKEN.sub("", snippet)


def register(conn: sqlite3.Connection) -> None:
    """`cm_indexed(text)` on this connection: every connection that writes rows must have it (storage.connect)."""
    conn.create_function(SQL_FUNCTION, 1, indexed, deterministic=True)
