"""The proxy's PostgreSQL: Prisma's schema, one connection, and the shapes LiteLLM answers rows in."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.extras

from .common import aware, log, utcnow
from .durations import next_budget_reset

DB_CONNECT_TIMEOUT = 3
# Fail a query on a database that stops answering instead of hanging a request thread on it.
DB_TCP_USER_TIMEOUT_MS = 5000
# Prisma's names and types from litellm's schema.prisma, so that what the collection reads from
# PostgreSQL is laid out as on a real unit. Columns are added one by one, so that a database made
# by an older litellm-sim gains the new ones.
TOKEN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("key_name", "TEXT"),
    ("key_alias", "TEXT"),
    ("soft_budget_cooldown", "BOOLEAN NOT NULL DEFAULT false"),
    ("spend", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("total_spend", "DOUBLE PRECISION NOT NULL DEFAULT 0"),
    ("expires", "TIMESTAMP(3)"),
    ("models", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("aliases", "JSONB NOT NULL DEFAULT '{}'"),
    ("config", "JSONB NOT NULL DEFAULT '{}'"),
    ("router_settings", "JSONB DEFAULT '{}'"),
    ("user_id", "TEXT"),
    ("team_id", "TEXT"),
    ("agent_id", "TEXT"),
    ("project_id", "TEXT"),
    ("permissions", "JSONB NOT NULL DEFAULT '{}'"),
    ("max_parallel_requests", "INTEGER"),
    ("metadata", "JSONB NOT NULL DEFAULT '{}'"),
    ("blocked", "BOOLEAN"),
    ("tpm_limit", "BIGINT"),
    ("rpm_limit", "BIGINT"),
    ("tpd_limit", "BIGINT"),
    ("max_budget", "DOUBLE PRECISION"),
    ("budget_duration", "TEXT"),
    ("budget_reset_at", "TIMESTAMP(3)"),
    ("allowed_cache_controls", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("allowed_routes", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("key_type", "TEXT"),
    ("policies", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("access_group_ids", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("model_spend", "JSONB NOT NULL DEFAULT '{}'"),
    ("model_max_budget", "JSONB NOT NULL DEFAULT '{}'"),
    ("budget_fallbacks", "JSONB NOT NULL DEFAULT '{}'"),
    ("budget_id", "TEXT"),
    ("organization_id", "TEXT"),
    ("object_permission_id", "TEXT"),
    ("created_at", "TIMESTAMP(3) DEFAULT (now() AT TIME ZONE 'UTC')"),
    ("created_by", "TEXT"),
    ("updated_at", "TIMESTAMP(3) DEFAULT (now() AT TIME ZONE 'UTC')"),
    ("updated_by", "TEXT"),
    ("settings_updated_at", "TIMESTAMP(3)"),
    ("last_active", "TIMESTAMP(3)"),
    ("rotation_count", "INTEGER DEFAULT 0"),
    ("auto_rotate", "BOOLEAN DEFAULT false"),
    ("rotation_interval", "TEXT"),
    ("last_rotation_at", "TIMESTAMP(3)"),
    ("key_rotation_at", "TIMESTAMP(3)"),
    ("budget_limits", "JSONB"),
)
# A deleted key keeps every column but its budget windows (LiteLLM drops budget_limits on archiving).
DELETED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("token", "TEXT NOT NULL"),
    *(column for column in TOKEN_COLUMNS if column[0] != "budget_limits"),
    ("deleted_at", "TIMESTAMP(3) NOT NULL"),
    ("deleted_by", "TEXT"),
    ("deleted_by_api_key", "TEXT"),
    ("litellm_changed_by", "TEXT"),
)
BUDGET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("max_budget", "DOUBLE PRECISION"),
    ("soft_budget", "DOUBLE PRECISION"),
    ("max_parallel_requests", "INTEGER"),
    ("tpm_limit", "BIGINT"),
    ("rpm_limit", "BIGINT"),
    ("tpd_limit", "BIGINT"),
    ("model_max_budget", "JSONB"),
    ("budget_duration", "TEXT"),
    ("budget_reset_at", "TIMESTAMP(3)"),
    ("allowed_models", "TEXT[] NOT NULL DEFAULT '{}'"),
    ("temp_budget_increase", "DOUBLE PRECISION"),
    ("temp_budget_expiry", "TIMESTAMP(3)"),
    ("created_at", "TIMESTAMP(3) NOT NULL"),
    ("created_by", "TEXT NOT NULL"),
    ("updated_at", "TIMESTAMP(3) NOT NULL"),
    ("updated_by", "TEXT NOT NULL"),
)
JSON_COLUMNS = frozenset(
    {
        "aliases",
        "config",
        "router_settings",
        "permissions",
        "metadata",
        "model_spend",
        "model_max_budget",
        "budget_fallbacks",
        "budget_limits",
    }
)
ARRAY_COLUMNS = frozenset({"models", "allowed_cache_controls", "allowed_routes", "policies", "access_group_ids"})
ARRAY_COLUMNS |= {"allowed_models"}


def _add_columns(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    return "".join(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS {name} {ddl};\n' for name, ddl in columns)


SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "LiteLLM_VerificationToken" (token TEXT PRIMARY KEY);\n'
    + _add_columns("LiteLLM_VerificationToken", TOKEN_COLUMNS)
    + 'CREATE INDEX IF NOT EXISTS "LiteLLM_VerificationToken_key_alias_idx" '
    + 'ON "LiteLLM_VerificationToken" (key_alias);\n'
    + 'CREATE TABLE IF NOT EXISTS "LiteLLM_DeletedVerificationToken" (id TEXT PRIMARY KEY);\n'
    + _add_columns("LiteLLM_DeletedVerificationToken", DELETED_COLUMNS)
    + 'CREATE INDEX IF NOT EXISTS "LiteLLM_DeletedVerificationToken_token_idx" '
    + 'ON "LiteLLM_DeletedVerificationToken" (token);\n'
    + 'CREATE TABLE IF NOT EXISTS "LiteLLM_BudgetTable" (budget_id TEXT PRIMARY KEY);\n'
    + _add_columns("LiteLLM_BudgetTable", BUDGET_COLUMNS)
    + """
CREATE TABLE IF NOT EXISTS "LiteLLM_SpendLogs" (
    request_id TEXT PRIMARY KEY,
    call_type TEXT NOT NULL,
    api_key TEXT NOT NULL DEFAULT '',
    spend DOUBLE PRECISION NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    "startTime" TIMESTAMP(3) NOT NULL,
    "endTime" TIMESTAMP(3) NOT NULL,
    request_duration_ms INTEGER,
    "completionStartTime" TIMESTAMP(3),
    model TEXT NOT NULL DEFAULT '',
    model_id TEXT DEFAULT '',
    model_group TEXT DEFAULT '',
    custom_llm_provider TEXT DEFAULT '',
    api_base TEXT DEFAULT '',
    "user" TEXT DEFAULT '',
    metadata JSONB DEFAULT '{}',
    end_user TEXT,
    requester_ip_address TEXT,
    status TEXT,
    litellm_call_id TEXT,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_startTime_idx" ON "LiteLLM_SpendLogs" ("startTime");
CREATE INDEX IF NOT EXISTS "LiteLLM_SpendLogs_api_key_startTime_idx" ON "LiteLLM_SpendLogs" (api_key, "startTime");
CREATE OR REPLACE VIEW "Last30dKeysBySpend" AS
SELECT L."api_key", V."key_alias", V."key_name", SUM(L."spend") AS total_spend
FROM "LiteLLM_SpendLogs" L LEFT JOIN "LiteLLM_VerificationToken" V ON L."api_key" = V."token"
WHERE L."startTime" >= (CURRENT_DATE - INTERVAL '30 days')
GROUP BY L."api_key", V."key_alias", V."key_name"
ORDER BY total_spend DESC;
"""
)
# Two sessions (a restarted litellm-sim next to one still draining) may create the schema at once.
SCHEMA_LOCK_ID = 0x7468_6F72  # pg_advisory_xact_lock key
# One statement, so that a spend log row and the key's running total never disagree.
RECORD_SPEND = """
WITH spend_log AS (
    INSERT INTO "LiteLLM_SpendLogs" (
        request_id, call_type, api_key, spend, total_tokens, prompt_tokens, completion_tokens,
        "startTime", "endTime", request_duration_ms, "completionStartTime", model, model_id, model_group,
        custom_llm_provider, api_base, "user", end_user, requester_ip_address, status, litellm_call_id
    ) VALUES (
        %(request_id)s, %(call_type)s, %(api_key)s, %(spend)s, %(total_tokens)s, %(prompt_tokens)s,
        %(completion_tokens)s, %(start)s, %(end)s, %(duration_ms)s, %(completion_start)s, %(model)s,
        %(model_id)s, %(model_group)s, 'openai', %(api_base)s, %(user)s, %(end_user)s, %(ip)s, 'success', %(call_id)s
    )
)
UPDATE "LiteLLM_VerificationToken"
SET spend = spend + %(spend)s, total_spend = GREATEST(total_spend, spend) + %(spend)s, last_active = %(end)s
WHERE token = %(api_key)s
"""
# The field order of the objects LiteLLM answers with: a Prisma row's model_dump() follows
# schema.prisma (relations last), the pydantic LiteLLM_VerificationToken its own declaration.
PRISMA_TOKEN_FIELDS = (
    "token",
    *(name for name, _ in TOKEN_COLUMNS),
    "litellm_budget_table",
    "litellm_organization_table",
    "litellm_project_table",
    "object_permission",
    "jwt_key_mappings",
)
PYDANTIC_TOKEN_FIELDS = (
    "token",
    "key_name",
    "key_alias",
    "spend",
    "total_spend",
    "max_budget",
    "expires",
    "models",
    "aliases",
    "config",
    "user_id",
    "team_id",
    "agent_id",
    "project_id",
    "max_parallel_requests",
    "metadata",
    "tpm_limit",
    "rpm_limit",
    "tpd_limit",
    "budget_duration",
    "budget_reset_at",
    "allowed_cache_controls",
    "allowed_routes",
    "key_type",
    "permissions",
    "model_spend",
    "model_max_budget",
    "budget_fallbacks",
    "soft_budget_cooldown",
    "blocked",
    "litellm_budget_table",
    "budget_id",
    "org_id",
    "created_at",
    "created_by",
    "updated_at",
    "updated_by",
    "settings_updated_at",
    "last_active",
    "object_permission_id",
    "object_permission",
    "access_group_ids",
    "rotation_count",
    "auto_rotate",
    "rotation_interval",
    "last_rotation_at",
    "key_rotation_at",
    "router_settings",
    "budget_limits",
)
DELETED_TOKEN_FIELDS = (
    *PYDANTIC_TOKEN_FIELDS,
    "id",
    "organization_id",
    "deleted_at",
    "deleted_by",
    "deleted_by_api_key",
    "litellm_changed_by",
)
PRISMA_BUDGET_FIELDS = (
    "budget_id",
    *(name for name, _ in BUDGET_COLUMNS),
    "organization",
    "projects",
    "keys",
    "end_users",
    "tags",
    "model_access_groups",
    "team_membership",
    "organization_membership",
)


class DatabaseDown(Exception):
    pass


class Database:
    """One autocommit connection, made (with the schema) on first use and again after any failure.
    Every use holds a lock, so that work done in one `run` is never interleaved with another's."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Any = None
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], Any], atomic: bool = False) -> Any:
        """Run `work(cursor)`; with `atomic`, in one transaction."""
        with self._lock:
            # A connection that was open may have been cut by a restart of the server since: one
            # failure on it is retried on a new connection before the database counts as down.
            while True:
                fresh = self._conn is None
                try:
                    if fresh:
                        self._conn = psycopg2.connect(
                            self._url, connect_timeout=DB_CONNECT_TIMEOUT, tcp_user_timeout=DB_TCP_USER_TIMEOUT_MS
                        )
                        self._conn.autocommit = True
                        with self._conn.cursor() as cur:
                            cur.execute("BEGIN")
                            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
                            cur.execute(SCHEMA)
                            cur.execute("COMMIT")
                        log.info("database connected")
                    with self._conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                        if not atomic:
                            return work(cur)
                        cur.execute("BEGIN")
                        try:
                            result = work(cur)
                        except BaseException:
                            with contextlib.suppress(psycopg2.Error):
                                cur.execute("ROLLBACK")
                            raise
                        cur.execute("COMMIT")
                        return result
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    if self._conn is not None:
                        with contextlib.suppress(psycopg2.Error):
                            self._conn.close()
                        self._conn = None
                    if fresh:
                        raise DatabaseDown(str(exc).strip()) from exc

    def ping(self) -> None:
        self.run(lambda cur: cur.execute("SELECT 1"))

    def find_key(self, token: str) -> dict[str, Any] | None:
        """The key's row, its budget reset first if its budget window has ended."""

        def work(cur: Any) -> Any:
            reset_due_budgets(cur, utcnow(), token)
            return fetch_key(cur, token)

        return self.run(work, atomic=True)

    def record_spend(self, row: dict[str, Any]) -> None:
        self.run(lambda cur: cur.execute(RECORD_SPEND, row))


def _adapt(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None:
        return psycopg2.extras.Json(value)
    return value


def _placeholder(column: str) -> str:
    # An empty Python list has no element type: name it.
    return "%s::text[]" if column in ARRAY_COLUMNS else "%s"


def insert_row(cur: Any, table: str, row: dict[str, Any], on_conflict_nothing: str | None = None) -> None:
    columns = list(row)
    sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join(map(_placeholder, columns))})'
    if on_conflict_nothing:
        sql += f" ON CONFLICT ({on_conflict_nothing}) DO NOTHING"
    cur.execute(sql, [_adapt(column, row[column]) for column in columns])


def update_key_row(cur: Any, token: str, values: dict[str, Any]) -> dict[str, Any] | None:
    sets = ", ".join(f"{column} = {_placeholder(column)}" for column in values)
    cur.execute(
        f'UPDATE "LiteLLM_VerificationToken" SET {sets} WHERE token = %s RETURNING *',
        [*(_adapt(column, value) for column, value in values.items()), token],
    )
    return cur.fetchone()


def fetch_key(cur: Any, token: str) -> dict[str, Any] | None:
    cur.execute('SELECT * FROM "LiteLLM_VerificationToken" WHERE token = %s', (token,))
    return cur.fetchone()


def fetch_budget(cur: Any, budget_id: str | None) -> dict[str, Any] | None:
    if budget_id is None:
        return None
    cur.execute('SELECT * FROM "LiteLLM_BudgetTable" WHERE budget_id = %s', (budget_id,))
    return cur.fetchone()


def reset_due_budgets(cur: Any, now: datetime, token: str | None = None) -> None:
    """What LiteLLM's ResetBudgetJob does to keys whose budget window has ended: spend back to 0
    and the end of the next window in budget_reset_at."""
    sql = (
        'SELECT token, budget_duration FROM "LiteLLM_VerificationToken" '
        "WHERE budget_reset_at < %s AND (expires IS NULL OR expires > %s)"
    )
    params: list[Any] = [now, now]
    if token is not None:
        sql += " AND token = %s"
        params.append(token)
    cur.execute(sql, params)
    for row in cur.fetchall():
        try:
            reset_at = next_budget_reset(row["budget_duration"], now) if row["budget_duration"] else None
        except (ValueError, OverflowError):
            reset_at = None
        cur.execute(
            'UPDATE "LiteLLM_VerificationToken" SET spend = 0, budget_reset_at = COALESCE(%s, budget_reset_at) '
            "WHERE token = %s",
            (reset_at.replace(tzinfo=None) if reset_at else None, row["token"]),
        )


def budget_view(budget: dict[str, Any] | None) -> dict[str, Any] | None:
    """A LiteLLM_BudgetTable row as Prisma dumps it (relations unloaded)."""
    if budget is None:
        return None
    return {
        name: aware(value) if isinstance(value := budget.get(name), datetime) else value
        for name in PRISMA_BUDGET_FIELDS
    }


def prisma_key_view(row: dict[str, Any], budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A LiteLLM_VerificationToken row as Prisma dumps it; only litellm_budget_table may be loaded."""
    view = {}
    for name in PRISMA_TOKEN_FIELDS:
        value = row.get(name)
        view[name] = aware(value) if isinstance(value, datetime) else value
    view["litellm_budget_table"] = budget_view(budget)
    return view


def pydantic_key_view(row: dict[str, Any], budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """A key row through LiteLLM's pydantic LiteLLM_VerificationToken (organization_id as org_id)."""
    prisma = prisma_key_view(row, budget)
    return {name: prisma["organization_id"] if name == "org_id" else prisma.get(name) for name in PYDANTIC_TOKEN_FIELDS}


def deleted_key_view(row: dict[str, Any]) -> dict[str, Any]:
    """An archived key through LiteLLM_DeletedVerificationToken."""
    view = pydantic_key_view(row)
    for name in DELETED_TOKEN_FIELDS[len(PYDANTIC_TOKEN_FIELDS) :]:
        value = row.get(name)
        view[name] = aware(value) if isinstance(value, datetime) else value
    view["org_id"] = None
    return view


def key_status(row: dict[str, Any], now: datetime) -> str:
    if row.get("blocked") is True:
        return "revoked"
    if row.get("expires") is None:
        return "active"
    return "expired" if aware(row["expires"]) < aware(now) else "active"
