"""The memory tables, version by version for each database (applied by
:func:`~kernelagent.database.backend.migrate` as component ``memory``), and free text
turned into each database's full-text query.

SQLite: ``memories`` plus an FTS5 index (``porter unicode61``) kept by triggers, ranked by
``bm25``. PostgreSQL: ``memories`` with a generated ``tsvector`` column (``english``) under
a GIN index, ranked by ``ts_rank``. Both match any of the query's words (OR), stemmed.
"""

from __future__ import annotations

import re

from kernelagent.database.backend import Dialect

COMPONENT = "memory"

FIELDS = (
    "id",
    "user",
    "project",
    "kind",
    "text",
    "session_id",
    "cell_id",
    "notebook",
    "dataset_sha256",
    "dataset_name",
    "score",
    "key",
    "created_at",
    "updated_at",
)
"""A :class:`~kernelagent.memory.records.Memory`'s fields, in column order."""
COLUMN = {field: "user_name" if field == "user" else field for field in FIELDS}
"""``user`` is reserved in PostgreSQL: its column is ``user_name``."""
COLUMNS = tuple(COLUMN[field] for field in FIELDS)

_TABLE = """CREATE TABLE IF NOT EXISTS memories (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    project TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    session_id TEXT,
    cell_id TEXT,
    notebook TEXT,
    dataset_sha256 TEXT,
    dataset_name TEXT,
    score {real} NOT NULL DEFAULT 1.0,
    key TEXT,
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL{search}
)"""
_INDEXES = [
    "CREATE UNIQUE INDEX IF NOT EXISTS memories_by_key ON memories (user_name, project, key) "
    "WHERE key IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS memories_by_dataset ON memories (user_name, dataset_sha256)",
    "CREATE INDEX IF NOT EXISTS memories_by_user ON memories (user_name, updated_at)",
]
_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5("
    "text, dataset_name, content='memories', content_rowid='rowid', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN "
    "INSERT INTO memories_fts (rowid, text, dataset_name) "
    "VALUES (new.rowid, new.text, coalesce(new.dataset_name, '')); END",
    "CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN "
    "INSERT INTO memories_fts (memories_fts, rowid, text, dataset_name) "
    "VALUES ('delete', old.rowid, old.text, coalesce(old.dataset_name, '')); END",
    "CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF text, dataset_name ON memories "
    "BEGIN "
    "INSERT INTO memories_fts (memories_fts, rowid, text, dataset_name) "
    "VALUES ('delete', old.rowid, old.text, coalesce(old.dataset_name, '')); "
    "INSERT INTO memories_fts (rowid, text, dataset_name) "
    "VALUES (new.rowid, new.text, coalesce(new.dataset_name, '')); END",
]
TEXT_SEARCH_CONFIG = "english"
"""PostgreSQL's stemmer for memories (SQLite's FTS5 uses the Porter stemmer)."""
_POSTGRES_SEARCH = (
    ",\n    search tsvector GENERATED ALWAYS AS (to_tsvector("
    f"'{TEXT_SEARCH_CONFIG}', text || ' ' || coalesce(dataset_name, ''))) STORED"
)

SCHEMA: dict[Dialect, list[list[str]]] = {
    "sqlite": [[_TABLE.format(real="REAL", search=""), *_INDEXES, *_SQLITE_FTS]],
    "postgresql": [
        [
            _TABLE.format(real="DOUBLE PRECISION", search=_POSTGRES_SEARCH),
            *_INDEXES,
            "CREATE INDEX IF NOT EXISTS memories_search ON memories USING GIN (search)",
        ]
    ],
}

_STOPWORD_TEXT = (
    "the and for with from that this what which when where how are was were has have had "
    "not but all any can its into per than then them they you your csv tsv json txt file "
    "files data dataset show tell give find compute print import pandas python code"
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words too common in tasks (and in the code findings carry) to tell memories apart."""


def search_words(text: str, max_terms: int = 24) -> list[str]:
    """The distinct words of free text worth looking for (3+ characters, no stopwords)."""
    words: list[str] = []
    for word in re.findall(r"\w+", text.lower()):
        if len(word) >= 3 and word not in STOPWORDS and word not in words:
            words.append(word)
    return words[:max_terms]


def fts_query(text: str) -> str:
    """Free text as an FTS5 query: its words, quoted, any of them."""
    return " OR ".join(f'"{word}"' for word in search_words(text))


def websearch_query(text: str) -> str:
    """Free text for PostgreSQL's ``websearch_to_tsquery``: its words, any of them."""
    return " or ".join(search_words(text))
