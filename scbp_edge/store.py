"""The run store: one SQLite file per run, committed after every change.

Each candidate row carries its status (pending, exported, measured, failed),
the stage it failed in and the error, and its JSON payloads.  A run killed at
any point (Ctrl-C, SIGKILL) keeps every committed row, so ``--resume`` redoes
only unfinished work.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from scbp_edge.errors import RunError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    ratios TEXT NOT NULL,
    reference TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    stage TEXT,
    error TEXT,
    static TEXT,
    onnx TEXT,
    accuracy TEXT,
    measurement TEXT,
    trained TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
"""
JSON_COLUMNS = ("ratios", "static", "onnx", "accuracy", "measurement", "trained")
STATUSES = ("pending", "exported", "measured", "failed")


class RunStore:
    """SQLite-backed record of one run's candidates and settings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            # Device-pool threads report through one lock-serialised callback, hence check_same_thread=False.
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed row survives SIGKILL and power loss
            self.db.executescript(SCHEMA)
            self.db.commit()
        except sqlite3.DatabaseError as exc:
            raise RunError(f"'{self.path}' is not a usable run database ({exc}); start a new run") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def add_candidates(self, cands: list[dict[str, Any]]) -> int:
        """Insert candidates not yet present; returns how many were new."""
        now = time.time()
        with self.db:
            before = self.db.total_changes
            for pos, c in enumerate(cands):
                self.db.execute(
                    "INSERT OR IGNORE INTO candidates (id, position, ratios, reference, static, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (c["id"], pos, json.dumps(c["ratios"]), c.get("reference"), json.dumps(c.get("static")), now),
                )
            return self.db.total_changes - before

    def update(self, cid: str, **fields: Any) -> None:
        """Set columns of candidate ``cid`` and commit at once."""
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"bad status {fields['status']}")
        cols = {k: (json.dumps(v) if k in JSON_COLUMNS else v) for k, v in fields.items()}
        cols["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.db:
            self.db.execute(f"UPDATE candidates SET {sets} WHERE id = ?", (*cols.values(), cid))

    def retry_failed(self, stages: tuple[str, ...]) -> int:
        """Put candidates that failed in ``stages`` back to 'exported'; returns how many."""
        marks = ",".join("?" for _ in stages)
        with self.db:
            cur = self.db.execute(
                f"UPDATE candidates SET status='exported', stage=NULL, error=NULL, attempts=attempts+1 "
                f"WHERE status='failed' AND stage IN ({marks})", stages)
        return cur.rowcount

    def fail(self, cid: str, stage: str, error: str) -> None:
        self.update(cid, status="failed", stage=stage, error=error)

    def candidates(self, status: str | None = None) -> list[dict[str, Any]]:
        """All candidates (optionally of one status) in their original order, JSON decoded."""
        q = "SELECT * FROM candidates" + (" WHERE status = ?" if status else "") + " ORDER BY position"
        rows = self.db.execute(q, (status,) if status else ()).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            for k in JSON_COLUMNS:
                d[k] = json.loads(d[k]) if d[k] is not None else None
            out.append(d)
        return out
