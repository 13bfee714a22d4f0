"""SQLite store: connection, numbered migrations, and the rows every other part reads.

SQLite is the source of truth; Chroma is derived from it. WAL with synchronous=NORMAL survives a
killed process (only a power cut can lose the last commits), which is the durability hooks need.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from worker import fts_rank, identifiers

log = logging.getLogger("claude_mem.storage")

MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: a row id (or anchor) past it cannot exist, and cannot be bound

# Search reads each observation with a little of its neighbours in the same session (by id): a short
# observation whose meaning lives next to it ("Yes, it fixed the crash", a bare reply to a question) is then
# found by the words of what it answers. For keyword search, the text of the CONTEXT_RADIUS observations
# before and after it sits in its own FTS column, `context`, which bm25 weighs well below the row's own
# columns (search.FTS), so the row that holds the words still ranks first; snippets and corpus filters leave
# the column out. (The vectors get the nearest neighbour on each side: vectors.observation_doc.)
# The values migration 9 wrote into the index and its triggers (migrations are frozen: their SQL takes
# literals, so changing these two takes a new migration that rebuilds the column).
CONTEXT_RADIUS = 2
CONTEXT_CHARS = 200  # of each neighbour: its narrative, else its subtitle, else its title
NEIGHBOUR_TEXT = "coalesce(nullif(trim({a}.narrative), ''), nullif(trim({a}.subtitle), ''), {a}.title, '')"


def _neighbour_text(session: str, row_id: str, before: bool, offset: int, chars: int) -> str:
    op, order = ("<", "DESC") if before else (">", "ASC")
    text = NEIGHBOUR_TEXT.format(a="n")
    return (
        f"coalesce((SELECT substr({text}, 1, {chars}) FROM observations n WHERE n.session_id = {session}"
        f" AND n.id {op} {row_id} ORDER BY n.id {order} LIMIT 1 OFFSET {offset}), '')"
    )


def context_sql(session: str, row_id: str, radius: int, chars: int) -> str:
    """SQL for the `context` column of observation `row_id` in session `session` (both SQL expressions):
    the text (`chars` of each) of up to `radius` observations on each side, nearest first."""
    parts = [_neighbour_text(session, row_id, before, k, chars) for k in range(radius) for before in (True, False)]
    return " || char(10) || ".join(parts)


def _prev_id(session: str, row_id: str) -> str:
    return f"(SELECT max(p.id) FROM observations p WHERE p.session_id = {session} AND p.id < {row_id})"


def _next_id(session: str, row_id: str) -> str:
    return f"(SELECT min(p.id) FROM observations p WHERE p.session_id = {session} AND p.id > {row_id})"


def neighbour_ids(session: str, row_id: str, radius: int) -> str:
    """The ids of up to `radius` observations on each side of `row_id` in its session."""
    return (
        f"SELECT id FROM (SELECT p.id FROM observations p WHERE p.session_id = {session} AND p.id < {row_id}"
        f" ORDER BY p.id DESC LIMIT {radius}) UNION ALL SELECT id FROM (SELECT p.id FROM observations p"
        f" WHERE p.session_id = {session} AND p.id > {row_id} ORDER BY p.id LIMIT {radius})"
    )


_OBS_FTS_COLUMNS = "title, subtitle, narrative, facts, concepts, files, context"
_MIGRATION_7 = f"""
        -- observations_fts gains `context` (the neighbours' text, see CONTEXT_CHARS): FTS5 has no ADD COLUMN,
        -- so the table is rebuilt from observations.
        DROP TRIGGER observations_ai;
        DROP TRIGGER observations_ad;
        DROP TABLE observations_fts;
        CREATE VIRTUAL TABLE observations_fts USING fts5(
            {_OBS_FTS_COLUMNS},
            tokenize='porter unicode61'
        );
        INSERT INTO observations_fts(rowid, {_OBS_FTS_COLUMNS})
            SELECT o.id, o.title, o.subtitle, o.narrative, o.facts, o.concepts,
                   o.files_read || ' ' || o.files_modified, {context_sql("o.session_id", "o.id", 1, 300)}
            FROM observations o;
        CREATE TRIGGER observations_ai AFTER INSERT ON observations BEGIN
            INSERT INTO observations_fts(rowid, {_OBS_FTS_COLUMNS})
            VALUES (new.id, new.title, new.subtitle, new.narrative, new.facts, new.concepts,
                    new.files_read || ' ' || new.files_modified, {context_sql("new.session_id", "new.id", 1, 300)});
            UPDATE observations_fts
            SET context = {context_sql("new.session_id", _prev_id("new.session_id", "new.id"), 1, 300)}
            WHERE rowid = {_prev_id("new.session_id", "new.id")};
        END;
        CREATE TRIGGER observations_ad AFTER DELETE ON observations BEGIN
            DELETE FROM observations_fts WHERE rowid = old.id;
            UPDATE observations_fts SET context = {context_sql("old.session_id", "observations_fts.rowid", 1, 300)}
            WHERE rowid IN ({_prev_id("old.session_id", "old.id")}, {_next_id("old.session_id", "old.id")});
        END;
"""
_FTS_ROW = "observations_fts.rowid"

# Keyword search scoped to a project (or to observation types) walked the store's matches newest first and looked
# up each one's row to check it: at 1M observations a project holding 6 % of them checked 17k matches (about
# 4.6 µs each) to find its newest 1,000. Each FTS table gains `scope`, tokens naming its row's project and, for
# observations, its type; a scoped search puts them in its MATCH, and FTS5 intersects doclists instead. A token is
# the value's UTF-8 bytes in hex, between a letter and a '0' (one token whatever the value holds, which the porter
# stemmer leaves alone: it ends in a digit). bm25 gives the column no weight (search.WEIGHTS). The tables are
# rebuilt from their own text (FTS5 has no ADD COLUMN): at 1M observations about 85 s, once.
SCOPE_COLUMN = "scope"


def scope_sql(project: str, obs_type: str | None = None) -> str:
    """SQL for a row's `scope` text from SQL expressions for its project and (observations) type."""
    tokens = [f"'p' || hex({project}) || '0'"] + ([f"'t' || hex({obs_type}) || '0'"] if obs_type else [])
    return " || ' ' || ".join(tokens)


def scope_token(prefix: str, value: str) -> str:
    """The token `scope_sql` writes for a value: prefix 'p' for a project, 't' for an observation type."""
    return f"{prefix}{value.encode().hex().upper()}0"


def indexed_sql(expr: str) -> str:
    """SQL for a text column's value as the keyword indexes hold it since migration 17: with its identifiers'
    tokens (worker/identifiers.py)."""
    return f"{identifiers.SQL_FUNCTION}({expr})"


def observation_text_sql(row: str, idents: bool = True) -> str:
    """SQL for the text columns of an observation's keyword index row (title, subtitle, narrative, facts, concepts,
    files) from its row `row` ("new" in a trigger); `idents`: with identifiers' tokens (migration 17)."""
    text = [f"{row}.{c}" for c in ("title", "subtitle", "narrative", "facts", "concepts")]
    text.append(f"{row}.files_read || ' ' || {row}.files_modified")
    return ", ".join(indexed_sql(t) if idents else t for t in text)


def _observation_triggers(scope: bool, idents: bool = False) -> str:
    """observations' triggers keeping observations_fts (migration 9's, with `scope` from migration 15 and
    identifiers' tokens from migration 17)."""
    columns = f"{_OBS_FTS_COLUMNS}, {SCOPE_COLUMN}" if scope else _OBS_FTS_COLUMNS
    scope_value = f", {scope_sql('new.project', 'new.type')}" if scope else ""
    return f"""
        CREATE TRIGGER observations_ai AFTER INSERT ON observations BEGIN
            INSERT INTO observations_fts(rowid, {columns})
            VALUES (new.id, {observation_text_sql("new", idents)},
                    {context_sql("new.session_id", "new.id", 2, 200)}{scope_value});
            UPDATE observations_fts SET context = {context_sql("new.session_id", _FTS_ROW, 2, 200)}
            WHERE rowid IN ({neighbour_ids("new.session_id", "new.id", 2)});
            UPDATE vector_sync SET synced_at = 0
            WHERE kind = 'observation' AND row_id = {_prev_id("new.session_id", "new.id")};
        END;
        CREATE TRIGGER observations_ad AFTER DELETE ON observations BEGIN
            DELETE FROM observations_fts WHERE rowid = old.id;
            UPDATE observations_fts SET context = {context_sql("old.session_id", _FTS_ROW, 2, 200)}
            WHERE rowid IN ({neighbour_ids("old.session_id", "old.id", 2)});
            UPDATE vector_sync SET synced_at = 0 WHERE kind = 'observation'
                AND row_id IN ({_prev_id("old.session_id", "old.id")}, {_next_id("old.session_id", "old.id")});
        END;
"""


def _rebuilt_with_scope(table: str, columns: str, source: str, scope: str) -> str:
    """Migration 15's rebuild of one FTS table with a `scope` column, from the old one's text (`source`: a FROM
    clause where `f` is the old table)."""
    names = [c.strip() for c in columns.split(",")]
    return _rebuilt(table, [*names, SCOPE_COLUMN], [*(f"f.{c}" for c in names), scope], source)


def _rebuilt(table: str, names: list[str], values: list[str], source: str) -> str:
    """An FTS table rebuilt with columns `names`, each row's from SQL `values` over `source` (a FROM clause where
    `f` is the old table), merged into one segment. The text waits in a temporary table (outside the store's
    file) while the old index is dropped, so the new one reuses its pages: the file does not grow by an index's
    size."""
    copy = f"temp.{table}_copy"
    columns = ", ".join(names)
    picked = ", ".join(f"{v} AS {n}" for n, v in zip(names, values, strict=True))
    return f"""
        CREATE TABLE {copy} AS SELECT f.rowid AS id, {picked} FROM {source};
        DROP TABLE {table};
        CREATE VIRTUAL TABLE {table} USING fts5({columns}, tokenize='porter unicode61');
        INSERT INTO {table}({table}, rank) VALUES ('automerge', 0);
        INSERT INTO {table}(rowid, {columns}) SELECT id, {columns} FROM {copy};
        DROP TABLE {copy};
        INSERT INTO {table}({table}) VALUES ('optimize');
"""


_MIGRATION_9 = f"""
        -- The keyword context widens to 2 neighbours on each side, 200 characters each; and a row's
        -- vectors, which read its nearest neighbours, are made again when a neighbour comes or goes: its
        -- vector_sync row stays (its documents are in Chroma) with synced_at 0, which the backfill sends again.
        DROP TRIGGER observations_ai;
        DROP TRIGGER observations_ad;
        UPDATE observations_fts SET context = (
            SELECT {context_sql("o.session_id", "o.id", 2, 200)} FROM observations o
            WHERE o.id = observations_fts.rowid
        );
        {_observation_triggers(scope=False)}
"""

_SUMMARY_FTS_COLUMNS = "request, investigated, learned, completed, next_steps, notes"


def _prompt_scope(row: str) -> str:
    """A prompt's `scope`: its session's project (prompts have no project of their own)."""
    return f"(SELECT {scope_sql('s.project')} FROM sessions s WHERE s.id = {row}.session_id)"


def _summary_prompt_triggers(idents: bool) -> str:
    """The insert triggers of session_summaries_fts and user_prompts_fts (migration 15's; 17's with identifiers'
    tokens)."""
    text = [f"new.{c.strip()}" for c in _SUMMARY_FTS_COLUMNS.split(",")]
    summary = ", ".join(indexed_sql(t) if idents else t for t in text)
    prompt = indexed_sql("new.text") if idents else "new.text"
    return f"""
        CREATE TRIGGER session_summaries_ai AFTER INSERT ON session_summaries BEGIN
            INSERT INTO session_summaries_fts(rowid, {_SUMMARY_FTS_COLUMNS}, {SCOPE_COLUMN})
            VALUES (new.id, {summary}, {scope_sql("new.project")});
        END;
        CREATE TRIGGER user_prompts_ai AFTER INSERT ON user_prompts BEGIN
            INSERT INTO user_prompts_fts(rowid, text, {SCOPE_COLUMN}) VALUES (new.id, {prompt}, {_prompt_scope("new")});
        END;
"""


_MIGRATION_15 = "".join(
    [
        """
        -- Scoped keyword search through FTS5 (see SCOPE_COLUMN): every FTS table gains `scope`, and the insert
        -- triggers fill it (the delete triggers stay: they name the table, which is made again under its name).
        DROP TRIGGER observations_ai;
        DROP TRIGGER observations_ad;
        DROP TRIGGER session_summaries_ai;
        DROP TRIGGER user_prompts_ai;
""",
        _rebuilt_with_scope(
            "observations_fts",
            _OBS_FTS_COLUMNS,
            "observations_fts f JOIN observations o ON o.id = f.rowid",
            scope_sql("o.project", "o.type"),
        ),
        _observation_triggers(scope=True),
        _rebuilt_with_scope(
            "session_summaries_fts",
            _SUMMARY_FTS_COLUMNS,
            "session_summaries_fts f JOIN session_summaries o ON o.id = f.rowid",
            scope_sql("o.project"),
        ),
        _rebuilt_with_scope(
            "user_prompts_fts", "text", "user_prompts_fts f JOIN user_prompts o ON o.id = f.rowid", _prompt_scope("o")
        ),
        _summary_prompt_triggers(idents=False),
        f"""
        -- A session's project is filled in after its first prompts when it was not known yet (ensure_session).
        -- Per-project keyword indexes lack the column: fts_partition.drop_stale drops them, and makes them again.
        UPDATE fts_partitions SET ready = -1;
        CREATE TRIGGER sessions_project_scope AFTER UPDATE OF project ON sessions
        WHEN old.project IS NOT new.project BEGIN
            UPDATE user_prompts_fts SET {SCOPE_COLUMN} = {scope_sql("new.project")}
            WHERE rowid IN (SELECT id FROM user_prompts WHERE session_id = new.id);
        END;
""",
    ]
)


def _with_identifiers(table: str, columns: str, text: str) -> str:
    """Migration 17's rebuild of one FTS table: its `text` columns with identifiers' tokens, the rest as they are."""
    names = [c.strip() for c in columns.split(",")] + [SCOPE_COLUMN]
    wanted = {c.strip() for c in text.split(",")}
    return _rebuilt(table, names, [indexed_sql(f"f.{n}") if n in wanted else f"f.{n}" for n in names], f"{table} f")


_TEXT_COLUMNS = "title, subtitle, narrative, facts, concepts, files"  # observations_fts's but `context`
_MIGRATION_17 = "".join(
    [
        """
        -- Identifiers as one token each (worker/identifiers.py): every text column of the keyword indexes gains
        -- its identifiers' tokens, from now on (the insert triggers) and for every row there is (a rebuild, as
        -- migration 15's). Per-project indexes are made again from the store-wide one; FtsCounter counts again.
        DROP TRIGGER observations_ai;
        DROP TRIGGER observations_ad;
        DROP TRIGGER session_summaries_ai;
        DROP TRIGGER user_prompts_ai;
""",
        _with_identifiers("observations_fts", _OBS_FTS_COLUMNS, _TEXT_COLUMNS),
        _observation_triggers(scope=True, idents=True),
        _with_identifiers("session_summaries_fts", _SUMMARY_FTS_COLUMNS, _SUMMARY_FTS_COLUMNS),
        _with_identifiers("user_prompts_fts", "text", "text"),
        _summary_prompt_triggers(idents=True),
        """
        UPDATE fts_partitions SET ready = -1;
        DELETE FROM fts_word_rows;
        DELETE FROM fts_word_counts;
""",
    ]
)

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            content_session_id TEXT NOT NULL UNIQUE,
            memory_session_id TEXT NOT NULL UNIQUE,
            sdk_session_id TEXT,
            project TEXT NOT NULL DEFAULT '',
            platform_source TEXT NOT NULL DEFAULT 'claude',
            custom_title TEXT,
            status TEXT NOT NULL DEFAULT 'active',
            prompt_counter INTEGER NOT NULL DEFAULT 0,
            started_at REAL NOT NULL,
            completed_at REAL,
            last_error TEXT
        );
        CREATE INDEX sessions_project ON sessions(project, started_at);

        CREATE TABLE user_prompts (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            prompt_number INTEGER NOT NULL,
            text TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE(session_id, prompt_number)
        );

        CREATE TABLE pending_events (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            owner TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX pending_events_claim ON pending_events(state, next_attempt_at, session_id, id);
        CREATE INDEX pending_events_session ON pending_events(session_id, state, id);

        CREATE TABLE observations (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            project TEXT NOT NULL,
            type TEXT NOT NULL,
            title TEXT,
            subtitle TEXT,
            facts TEXT NOT NULL DEFAULT '[]',
            narrative TEXT,
            concepts TEXT NOT NULL DEFAULT '[]',
            files_read TEXT NOT NULL DEFAULT '[]',
            files_modified TEXT NOT NULL DEFAULT '[]',
            prompt_number INTEGER,
            created_at REAL NOT NULL
        );
        CREATE INDEX observations_project ON observations(project, created_at);
        CREATE INDEX observations_session ON observations(session_id);

        CREATE TABLE session_summaries (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            project TEXT NOT NULL,
            request TEXT,
            investigated TEXT,
            learned TEXT,
            completed TEXT,
            next_steps TEXT,
            notes TEXT,
            prompt_number INTEGER,
            created_at REAL NOT NULL
        );
        CREATE INDEX session_summaries_project ON session_summaries(project, created_at);

        CREATE VIRTUAL TABLE observations_fts USING fts5(
            title, subtitle, narrative, facts, concepts, files,
            tokenize='porter unicode61'
        );
        CREATE TRIGGER observations_ai AFTER INSERT ON observations BEGIN
            INSERT INTO observations_fts(rowid, title, subtitle, narrative, facts, concepts, files)
            VALUES (new.id, new.title, new.subtitle, new.narrative, new.facts, new.concepts,
                    new.files_read || ' ' || new.files_modified);
        END;
        CREATE TRIGGER observations_ad AFTER DELETE ON observations BEGIN
            DELETE FROM observations_fts WHERE rowid = old.id;
        END;

        CREATE VIRTUAL TABLE session_summaries_fts USING fts5(
            request, investigated, learned, completed, next_steps, notes,
            tokenize='porter unicode61'
        );
        CREATE TRIGGER session_summaries_ai AFTER INSERT ON session_summaries BEGIN
            INSERT INTO session_summaries_fts(rowid, request, investigated, learned, completed, next_steps, notes)
            VALUES (new.id, new.request, new.investigated, new.learned, new.completed, new.next_steps, new.notes);
        END;
        CREATE TRIGGER session_summaries_ad AFTER DELETE ON session_summaries BEGIN
            DELETE FROM session_summaries_fts WHERE rowid = old.id;
        END;

        CREATE VIRTUAL TABLE user_prompts_fts USING fts5(
            text, tokenize='porter unicode61'
        );
        CREATE TRIGGER user_prompts_ai AFTER INSERT ON user_prompts BEGIN
            INSERT INTO user_prompts_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER user_prompts_ad AFTER DELETE ON user_prompts BEGIN
            DELETE FROM user_prompts_fts WHERE rowid = old.id;
        END;
        """,
    ),
    (
        2,
        """
        -- Vector sync state (Chroma is derived from SQLite): a row here means the row's documents are
        -- in Chroma. Rows without one are what the backfill sends.
        CREATE TABLE vector_sync (
            kind TEXT NOT NULL,
            row_id INTEGER NOT NULL,
            synced_at REAL NOT NULL,
            PRIMARY KEY (kind, row_id)
        ) WITHOUT ROWID;

        -- Deleted rows whose documents are still in Chroma; the sync removes them, retrying while
        -- Chroma is down, so a delete is never lost.
        CREATE TABLE vector_tombstones (
            kind TEXT NOT NULL,
            row_id INTEGER NOT NULL,
            deleted_at REAL NOT NULL,
            PRIMARY KEY (kind, row_id)
        ) WITHOUT ROWID;

        CREATE TRIGGER observations_vector_ad AFTER DELETE ON observations
        WHEN EXISTS (SELECT 1 FROM vector_sync WHERE kind = 'observation' AND row_id = old.id) BEGIN
            INSERT OR REPLACE INTO vector_tombstones
                VALUES ('observation', old.id, (julianday('now') - 2440587.5) * 86400.0);
            DELETE FROM vector_sync WHERE kind = 'observation' AND row_id = old.id;
        END;
        CREATE TRIGGER session_summaries_vector_ad AFTER DELETE ON session_summaries
        WHEN EXISTS (SELECT 1 FROM vector_sync WHERE kind = 'summary' AND row_id = old.id) BEGIN
            INSERT OR REPLACE INTO vector_tombstones
                VALUES ('summary', old.id, (julianday('now') - 2440587.5) * 86400.0);
            DELETE FROM vector_sync WHERE kind = 'summary' AND row_id = old.id;
        END;
        CREATE TRIGGER user_prompts_vector_ad AFTER DELETE ON user_prompts
        WHEN EXISTS (SELECT 1 FROM vector_sync WHERE kind = 'prompt' AND row_id = old.id) BEGIN
            INSERT OR REPLACE INTO vector_tombstones
                VALUES ('prompt', old.id, (julianday('now') - 2440587.5) * 86400.0);
            DELETE FROM vector_sync WHERE kind = 'prompt' AND row_id = old.id;
        END;
        """,
    ),
    (
        3,
        """
        -- Knowledge-agent corpora: a named filter over observations, its rendered text, and the SDK
        -- session it was primed into.
        CREATE TABLE corpora (
            name TEXT PRIMARY KEY,
            spec TEXT NOT NULL,
            text TEXT NOT NULL,
            observation_count INTEGER NOT NULL,
            session_id TEXT,
            primed_at REAL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        4,
        """
        -- The key a hook gives each event, so an event sent again after a lost answer is stored once.
        ALTER TABLE pending_events ADD COLUMN event_key TEXT;
        CREATE UNIQUE INDEX pending_events_event_key ON pending_events(event_key) WHERE event_key IS NOT NULL;
        """,
    ),
    (
        5,
        """
        -- Every memory-agent turn's tokens (and cost when the SDK or gateway reports it), by UTC day, project
        -- and session: what `status` and GET /api/usage add up, and what the local daily budget counts.
        CREATE TABLE agent_usage (
            id INTEGER PRIMARY KEY,
            day TEXT NOT NULL,
            project TEXT NOT NULL,
            session_id INTEGER REFERENCES sessions(id) ON DELETE SET NULL,
            kind TEXT NOT NULL,
            events INTEGER NOT NULL,
            fresh INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_creation_tokens INTEGER NOT NULL,
            cost_usd REAL,
            model TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX agent_usage_day ON agent_usage(day, project);
        CREATE INDEX agent_usage_session ON agent_usage(session_id);

        -- Where the session's agent conversation stands: the input size of its last call and when that was,
        -- so the next turn knows whether to continue it or start afresh with a digest.
        ALTER TABLE sessions ADD COLUMN agent_context_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE sessions ADD COLUMN agent_turn_at REAL;
        ALTER TABLE sessions ADD COLUMN agent_cost_usd REAL;
        """,
    ),
    (
        6,
        """
        -- Newest-first reads by time across projects (the viewer's feed and its history pages, the overview's
        -- days) and counts by type: without these each one scanned and sorted whole tables.
        CREATE INDEX observations_created ON observations(created_at);
        CREATE INDEX session_summaries_created ON session_summaries(created_at);
        CREATE INDEX user_prompts_created ON user_prompts(created_at);
        CREATE INDEX observations_project_type ON observations(project, type);
        """,
    ),
    (7, _MIGRATION_7),
    (
        8,
        """
        -- Keyword search checks each full-text match against the filters (project, dates, type): from these
        -- covering indexes instead of the rows themselves, about five times cheaper per match (bench_search.py).
        CREATE INDEX observations_id_scope ON observations(id, project, created_at, type);
        CREATE INDEX session_summaries_id_scope ON session_summaries(id, project, created_at);
        """,
    ),
    (9, _MIGRATION_9),
    (
        10,
        """
        -- Keyword search: on every statement FTS5's bm25 counts the rows holding each query word (its idf) by
        -- walking the word's doclist through every segment of the index. Bulk loads and a year of inserts leave a
        -- dozen segments or more; merged into one, that walk (and every scan) took half the time at 1M
        -- observations (bench_search.py). Rows added later go to small new segments that FTS5's automerge folds
        -- in as they accumulate.
        INSERT INTO observations_fts(observations_fts) VALUES ('optimize');
        INSERT INTO session_summaries_fts(session_summaries_fts) VALUES ('optimize');
        INSERT INTO user_prompts_fts(user_prompts_fts) VALUES ('optimize');
        """,
    ),
    (
        11,
        """
        -- The queue's count per state (status, the viewer's poll, readiness), kept by triggers: pending_events
        -- keeps every event ever posted, and counting them grouped by state walked a whole index (1.2 s at 2M
        -- events). Now it reads four rows; each insert or state change updates one of them in its own transaction.
        CREATE TABLE queue_state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO queue_state_counts (state, n) SELECT state, COUNT(*) FROM pending_events GROUP BY state;
        CREATE TRIGGER pending_events_count_insert AFTER INSERT ON pending_events BEGIN
            INSERT INTO queue_state_counts (state, n) VALUES (NEW.state, 1)
                ON CONFLICT(state) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER pending_events_count_delete AFTER DELETE ON pending_events BEGIN
            UPDATE queue_state_counts SET n = n - 1 WHERE state = OLD.state;
        END;
        CREATE TRIGGER pending_events_count_state AFTER UPDATE OF state ON pending_events
        WHEN OLD.state IS NOT NEW.state BEGIN
            UPDATE queue_state_counts SET n = n - 1 WHERE state = OLD.state;
            INSERT INTO queue_state_counts (state, n) VALUES (NEW.state, 1)
                ON CONFLICT(state) DO UPDATE SET n = n + 1;
        END;
        """,
    ),
    (
        12,
        """
        -- Segments are merged by the worker's FtsMerger (worker/fts_merge.py), a short step at a time in a thread,
        -- no longer by FTS5's automerge inside whichever commit crossed its work unit: that was a hook post, and
        -- while a full merge was under way automerge continued it there (hundreds of pages in one post's
        -- commit). A flush that leaves 16 segments on one level still merges them (FTS5's crisismerge), so a
        -- store written while no worker runs stays bounded.
        INSERT INTO observations_fts(observations_fts, rank) VALUES ('automerge', 0);
        INSERT INTO session_summaries_fts(session_summaries_fts, rank) VALUES ('automerge', 0);
        INSERT INTO user_prompts_fts(user_prompts_fts, rank) VALUES ('automerge', 0);
        """,
    ),
    (
        13,
        """
        -- Per-project keyword indexes (worker/fts_partition.py, opt-in): a project past CLAUDE_MEM_PROJECT_INDEX_ROWS
        -- observations gets an FTS5 table of its own, observations_fts_p<rowid>, kept by triggers; search uses it
        -- once `ready` (every row of the project up to `copy_to`, the newest id when its triggers were made, was
        -- copied across).
        CREATE TABLE fts_partitions (
            project TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            ready INTEGER NOT NULL DEFAULT 0,
            copy_to INTEGER NOT NULL,
            created_at REAL NOT NULL
        );
        """,
    ),
    (
        14,
        """
        -- Event retention (worker/event_retention.py): done events are deleted once older than
        -- CLAUDE_MEM_EVENT_RETENTION_DAYS; this one row counts what was deleted, for status.
        CREATE TABLE event_retention (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pruned INTEGER NOT NULL DEFAULT 0,
            last_pruned_at REAL
        );
        INSERT INTO event_retention (id, pruned) VALUES (1, 0);
        """,
    ),
    (15, _MIGRATION_15),
    (
        16,
        """
        -- Word counts of the store-wide keyword indexes (worker/fts_counts.py): every word held by at least
        -- fts_counts.MIN_ROWS rows, counted by FtsCounter as of a table's last rowid (and row count), read by
        -- every search.
        CREATE TABLE fts_word_rows (
            tbl TEXT NOT NULL,
            term TEXT NOT NULL,
            rows INTEGER NOT NULL,
            PRIMARY KEY (tbl, term)
        ) WITHOUT ROWID;
        CREATE TABLE fts_word_counts (
            tbl TEXT PRIMARY KEY,
            last_rowid INTEGER NOT NULL,
            words INTEGER NOT NULL,
            seconds REAL NOT NULL,
            counted_at REAL NOT NULL,
            table_rows INTEGER NOT NULL
        );
        """,
    ),
    (17, _MIGRATION_17),
]


class Connection(sqlite3.Connection):
    """sqlite3's connection, saying whether fts_rank's `cm_bm25` is registered on it (`ranks`) and which file
    it opened (`database`: the key of fts_rank's row counts)."""

    ranks = False
    database = ""


def _ranked(conn: Connection, path: Path) -> None:
    conn.database = str(path.absolute())
    conn.ranks = fts_rank.register(conn)
    identifiers.register(conn)  # (the keyword indexes' insert triggers call it)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30, factory=Connection)
    _ranked(conn, path)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A second, read-only connection for a long read in a worker thread (WAL lets it run beside the
    event loop's writes), so an aggregate over the whole store never holds up hook posts. Read-only twice
    over (`mode=ro` and `query_only`), with no database to attach: `mode=ro` binds only the store, and
    ATTACH or VACUUM INTO could create and write any file."""
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=30, factory=Connection
    )
    _ranked(conn, path)
    conn.row_factory = sqlite3.Row
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.execute("PRAGMA query_only=1")
    return conn


# Migrations whose time grows with the store, and what to expect (said in the log before they run).
_SLOW_MIGRATIONS = {
    15: "rebuilding the keyword indexes with a scope column (about 10 s and 160 MB of temporary space, in"
    " SQLITE_TMPDIR or /var/tmp, per 100,000 observations; once)",
    17: "rebuilding the keyword indexes with a token for each identifier (about 30 s and 180 MB of temporary"
    " space, in SQLITE_TMPDIR or /var/tmp, per 100,000 observations; once)",
}


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations not yet applied, each in its own transaction; safe to run at every start."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for version, sql in MIGRATIONS:
        if version in applied:
            continue
        if version in _SLOW_MIGRATIONS and applied:  # an upgrade, not a new store: say why the start takes a while
            log.warning("store upgrade %d: %s", version, _SLOW_MIGRATIONS[version])
        with Tx(conn):
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
    return max((v for v, _ in MIGRATIONS), default=0)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements


def open_store(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    migrate(conn)
    return conn


class Tx:
    """`with Tx(conn):` — one IMMEDIATE transaction, committed on success, rolled back on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:  # (SQLite has rolled back already after some errors: a full disk)
            self.conn.execute("ROLLBACK")


# --- sessions -----------------------------------------------------------------------------------


def get_session(conn: sqlite3.Connection, content_session_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM sessions WHERE content_session_id = ?", (content_session_id,)).fetchone()


def get_session_by_id(conn: sqlite3.Connection, session_id: int) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()


def ensure_session(
    conn: sqlite3.Connection,
    content_session_id: str,
    project: str,
    platform_source: str = "claude",
    custom_title: str | None = None,
) -> sqlite3.Row:
    """Create the session on first sight; later calls fill a missing project but never rename one."""
    row = get_session(conn, content_session_id)
    if row is None:
        conn.execute(
            "INSERT INTO sessions (content_session_id, memory_session_id, project, platform_source,"
            " custom_title, started_at) VALUES (?, ?, ?, ?, ?, ?)",
            (content_session_id, str(uuid.uuid4()), project, platform_source or "claude", custom_title, time.time()),
        )
    elif project and not row["project"]:
        conn.execute("UPDATE sessions SET project = ? WHERE id = ?", (project, row["id"]))
    elif row["status"] == "completed":
        conn.execute("UPDATE sessions SET status = 'active', completed_at = NULL WHERE id = ?", (row["id"],))
    fresh = get_session(conn, content_session_id)
    assert fresh is not None
    return fresh


def add_prompt(conn: sqlite3.Connection, session_id: int, text: str) -> int:
    conn.execute("UPDATE sessions SET prompt_counter = prompt_counter + 1 WHERE id = ?", (session_id,))
    number = conn.execute("SELECT prompt_counter FROM sessions WHERE id = ?", (session_id,)).fetchone()[0]
    conn.execute(
        "INSERT INTO user_prompts (session_id, prompt_number, text, created_at) VALUES (?, ?, ?, ?)",
        (session_id, number, text, time.time()),
    )
    return int(number)


def complete_session(conn: sqlite3.Connection, session_id: int) -> None:
    conn.execute("UPDATE sessions SET status = 'completed', completed_at = ? WHERE id = ?", (time.time(), session_id))


# --- observations and summaries -----------------------------------------------------------------

KIND_TABLES = {"observation": "observations", "summary": "session_summaries", "prompt": "user_prompts"}


def rows_with_session(conn: sqlite3.Connection, kind: str, ids: list[int]) -> dict[int, sqlite3.Row]:
    """Rows of one kind by id, with their session's ids (and, for prompts, the session's project)."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    project = ", s.project" if kind == "prompt" else ""
    sql = (
        f"SELECT t.*, s.content_session_id, s.memory_session_id{project} FROM {KIND_TABLES[kind]} t"
        f" LEFT JOIN sessions s ON s.id = t.session_id WHERE t.id IN ({marks})"
    )
    return {r["id"]: r for r in conn.execute(sql, ids)}


OBS_JSON_FIELDS = ("facts", "concepts", "files_read", "files_modified")


def insert_observation(
    conn: sqlite3.Connection, session_id: int, project: str, obs: dict[str, Any], prompt_number: int | None
) -> int:
    cur = conn.execute(
        "INSERT INTO observations (session_id, project, type, title, subtitle, facts, narrative, concepts,"
        " files_read, files_modified, prompt_number, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            session_id,
            project,
            obs["type"],
            obs.get("title"),
            obs.get("subtitle"),
            json.dumps(obs.get("facts") or []),
            obs.get("narrative"),
            json.dumps(obs.get("concepts") or []),
            json.dumps(obs.get("files_read") or []),
            json.dumps(obs.get("files_modified") or []),
            prompt_number,
            time.time(),
        ),
    )
    return int(cur.lastrowid or 0)


# --- the schema's vocabulary: every module names rows and columns in these words -------------------

KINDS = ("observation", "summary", "prompt")  # the rows that are searched, synced to Chroma and shown
# Where each kind sorts among rows of the same instant: (created_at, rank, id) is the one total order of
# the timeline and of the viewer's feed, whose history cursors depend on it.
KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}
OBSERVATION_TYPES = ("bugfix", "feature", "refactor", "change", "discovery", "decision")
SUMMARY_FIELDS = ("request", "investigated", "learned", "completed", "next_steps", "notes")


def json_list(value: str | None) -> list[Any]:
    """A JSON-array column (facts, concepts, files): [] for NULL, bad JSON or anything not a list."""
    try:
        data = json.loads(value or "[]")
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def epoch_ms(seconds: float) -> int:
    """A stored `created_at` (epoch seconds) as the wire's epoch milliseconds."""
    return int(round(seconds * 1000))


def trim(text: str | None, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    value = (text or "").strip()
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def flat(text: str | None, limit: int) -> str:
    """One line (whitespace runs become one space) of at most `limit` characters."""
    return trim(" ".join((text or "").split()), limit)


def insert_summary(
    conn: sqlite3.Connection, session_id: int, project: str, summary: dict[str, Any], prompt_number: int | None
) -> int:
    cur = conn.execute(
        "INSERT INTO session_summaries (session_id, project, request, investigated, learned, completed,"
        " next_steps, notes, prompt_number, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (session_id, project, *(summary.get(f) for f in SUMMARY_FIELDS), prompt_number, time.time()),
    )
    return int(cur.lastrowid or 0)


def observation_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for field in OBS_JSON_FIELDS:
        out[field] = json_list(out.get(field))
    return out


def get_observations(conn: sqlite3.Connection, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT * FROM observations WHERE id IN ({marks}) ORDER BY id", ids).fetchall()
    return [observation_dict(r) for r in rows]


def delete_observation(conn: sqlite3.Connection, obs_id: int) -> bool:
    cur = conn.execute("DELETE FROM observations WHERE id = ?", (obs_id,))
    return cur.rowcount > 0
