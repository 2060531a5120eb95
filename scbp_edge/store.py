"""The run store: one SQLite file per run, committed after every change.

Each candidate row - one network at one precision - carries its status
(pending, exported, measured, failed), the stage it failed in and the error,
and its JSON payloads.  A run killed at any point (Ctrl-C, SIGKILL) keeps every
committed row, so ``--resume`` redoes only unfinished work.  A damaged file is
one clear error for anything that would write to it; a report can still read
whatever rows survive (:meth:`RunStore.salvage`).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from scbp_edge.errors import RunError
from scbp_edge.records import CandidateRow, decode, encode
from scbp_edge.records.run import RunManifest, RunProgress

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    network TEXT NOT NULL,
    precision TEXT NOT NULL,
    ratios TEXT NOT NULL,
    scopes TEXT NOT NULL DEFAULT '[]',
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
JSON_COLUMNS = ("ratios", "scopes", "static", "onnx", "accuracy", "measurement", "trained")
STATUSES = ("pending", "exported", "measured", "failed")


class RunLock:
    """An exclusive lock on a run directory (fcntl), held by the one process that works on it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunError(f"'{self.path.parent}' is in use by {holder}; wait for it to finish "
                           "(or stop it), then resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"scbp-edge pid {os.getpid()} since {time.strftime('%H:%M:%S')}".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock; a killed process drops it too
            self._fd = None


def disk_full(folder: Path) -> RunError:
    """The one line for a full disk: nothing committed is lost, so the run resumes once there is space."""
    return RunError(f"the disk holding '{folder}' is full; free some space (or move the folder to a larger disk) and "
                    f"continue with: scbp-edge build --resume {folder}")


def one_line(complaint: str, limit: int = 160) -> str:
    """SQLite's complaint as one bounded line: its integrity report spans several lines
    ("*** in database main ***", then one line per damaged page), and an error must stay one line."""
    parts = [p.strip() for p in complaint.splitlines() if p.strip() and not p.strip().startswith("***")]
    text = "; ".join(parts) or "unknown damage"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _damaged(path: Path, exc: Exception) -> RunError:
    if "full" in str(exc):  # SQLITE_FULL: the file is fine, the disk is not
        return disk_full(path.parent)
    return RunError(f"run database '{path}' is damaged ({one_line(str(exc))}); 'scbp-edge report {path.parent}' "
                    "shows what can still be read; start a new run to continue")


class RunStore:
    """SQLite-backed record of one run's candidates and settings."""

    def __init__(self, path: str | Path, *, create: bool = False, readonly: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise RunError(f"'{self.path.parent}' is not a run directory (no run.sqlite); pass a folder a build "
                           "printed")
        try:
            if readonly:  # a report only reads: it never changes (or repairs) the file
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            else:
                # Device-pool threads report through one lock-serialised callback, hence check_same_thread=False.
                self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")  # a committed row survives SIGKILL and power loss
                self.db.executescript(SCHEMA)
                self.db.commit()
            cols = {r[1] for r in self.db.execute("PRAGMA table_info(candidates)")}
            if not readonly and "network" in cols and "scopes" not in cols:  # a run from before issue 56: all stream
                with self.db:
                    self.db.execute("ALTER TABLE candidates ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]'")
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None
        if "network" not in cols:
            raise RunError(f"'{self.path.parent}' was made by an older scbp-edge (run format 1); start a new run")
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    def _do(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None

    def integrity_problem(self) -> str | None:
        """None when SQLite's integrity check passes, else its first complaint."""
        try:
            row = self.db.execute("PRAGMA integrity_check").fetchone()
        except sqlite3.DatabaseError as exc:
            return one_line(str(exc))
        return None if row and row[0] == "ok" else (one_line(row[0]) if row else "unknown damage")

    def start(self, manifest: RunManifest) -> None:
        """Write the run's manifest in one transaction: a run holds all of it or none (then it cannot resume)."""
        with self.db:
            for key, value in encode(manifest).items():
                self._do("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def manifest(self) -> RunManifest:
        """The manifest as written; a field on a damaged page, or from before it existed, reads as its default."""
        return decode(RunManifest, self._fields(RunManifest), f"the manifest of '{self.path.parent}'")

    def progress(self) -> RunProgress:
        """How far the build got; a field on a damaged page, or never written, reads as its default."""
        return decode(RunProgress, self._fields(RunProgress), f"the progress of '{self.path.parent}'")

    def update_progress(self, **changes: Any) -> RunProgress:
        """Set fields of the run's progress (records, as :class:`RunProgress` names them) and commit at once."""
        now = replace(self.progress(), **changes)  # a field RunProgress does not have is a TypeError here
        with self.db:
            for key in changes:
                self._do("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(encode(getattr(now, key)))))
        return now

    def _fields(self, record: type) -> dict[str, Any]:
        """``record``'s fields as stored, leaving out those absent, null or unreadable (for reports of damaged runs)."""
        out = {}
        for f in fields(record):
            try:
                row = self._do("SELECT value FROM meta WHERE key = ?", (f.name,)).fetchone()
                value = json.loads(row[0]) if row else None
            except (RunError, ValueError):
                continue
            if value is not None:
                out[f.name] = value
        return out

    def add_candidates(self, rows: Sequence[CandidateRow]) -> int:
        """Insert the rows not yet present, at their place in ``rows`` (their id, network, precision, ratios,
        scopes, reference and static costs; what is learnt later starts empty); returns how many were new."""
        now = time.time()
        with self.db:
            before = self.db.total_changes
            for pos, r in enumerate(rows):
                self._do(
                    "INSERT OR IGNORE INTO candidates (id, position, network, precision, ratios, scopes, reference, "
                    "static, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.id, pos, r.network, r.precision, json.dumps(list(r.ratios)), json.dumps(list(r.scopes)),
                     r.reference, json.dumps(encode(r.static)), now),
                )
            return self.db.total_changes - before

    def update(self, cid: str, **fields: Any) -> None:
        """Set columns of candidate ``cid`` and commit at once; a JSON column takes a record or plain values."""
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"bad status {fields['status']}")
        cols = {k: (json.dumps(encode(v)) if k in JSON_COLUMNS else v) for k, v in fields.items()}
        cols["updated"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.db:
            self._do(f"UPDATE candidates SET {sets} WHERE id = ?", (*cols.values(), cid))

    def retry_failed(self, stages: tuple[str, ...]) -> int:
        """Put candidates that failed in ``stages`` back to 'exported'; returns how many."""
        marks = ",".join("?" for _ in stages)
        with self.db:
            cur = self._do(
                f"UPDATE candidates SET status='exported', stage=NULL, error=NULL, attempts=attempts+1 "
                f"WHERE status='failed' AND stage IN ({marks})", stages)
        return cur.rowcount

    def fail(self, cid: str, stage: str, error: str) -> None:
        self.update(cid, status="failed", stage=stage, error=error)

    def _candidates(self, status: str | None = None) -> list[dict[str, Any]]:
        """All candidates (optionally of one status) in their original order, JSON decoded."""
        q = "SELECT * FROM candidates" + (" WHERE status = ?" if status else "") + " ORDER BY position"
        try:
            rows = self.db.execute(q, (status,) if status else ()).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None
        return [_decode(r) for r in rows]

    def count(self, status: str) -> int:
        """How many candidates have ``status``."""
        return int(self._do("SELECT count(*) FROM candidates WHERE status = ?", (status,)).fetchone()[0])

    def rows(self, status: str | None = None) -> list[CandidateRow]:
        """:meth:`_candidates` as typed records; a row that does not fit its record raises RecordError naming it."""
        return [CandidateRow.from_row(c) for c in self._candidates(status)]

    def salvage(self) -> tuple[list[dict[str, Any]], int]:
        """Every candidate row that can still be read, row by row; and how many could not."""
        try:
            return self._candidates(), 0
        except RunError:
            pass
        rows, lost, rowid, misses = [], 0, 0, 0
        while misses < 1000:  # rowids are dense; a long run of misses is the end of the table
            rowid += 1
            try:
                r = self.db.execute("SELECT * FROM candidates WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                lost += 1
                misses += 1
                continue
            if r is None:
                misses += 1
                continue
            misses = 0
            try:
                rows.append(_decode(r))
            except ValueError:
                lost += 1
        return sorted(rows, key=lambda d: d["position"]), lost


def _decode(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    for k in JSON_COLUMNS:
        if k in d:  # a run opened read-only from before a column existed lacks it: its record's default applies
            d[k] = json.loads(d[k]) if d[k] is not None else None
    return d
