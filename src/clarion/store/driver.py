"""Hot statements run as the driver's own SQL (`Connection.exec_driver_sql`), each value bound
by its column's own SQLAlchemy type, so that what is stored is exactly what Core stores.

Core's per-statement work (cache lookup, parameter processing, result set-up) was more than a
third of marking a delivery sent (0.55-0.60 ms, 0.38-0.43 ms this way) and, per row, most of
an ingest's writes. Statements are written with `:name` placeholders (sqlite3's named style),
turned into psycopg's `%(name)s` for PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table

_PLACEHOLDER = re.compile(r"(?<![:\w]):(\w+)")


class DriverSQL:
    """One statement, its placeholders' types named (`types`); run with `__call__` (one set of
    values: the row count), `scalar` (a `RETURNING` value) or `many` (an executemany)."""

    def __init__(self, sql: str, types: Mapping[str, Any]) -> None:
        self.sql = " ".join(sql.split())
        self.types = types
        self._ready: dict[str, tuple[str, dict[str, Any]]] = {}

    def __call__(self, conn: Connection, params: Mapping[str, Any]) -> int:
        sql, bound = self._bind(conn, params)
        return int(conn.exec_driver_sql(sql, bound).rowcount)

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        sql, bound = self._bind(conn, params)
        return conn.exec_driver_sql(sql, bound).scalar_one()

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        sql, processors = self._prepared(conn)
        bound = [
            {k: (processors[k](v) if k in processors else v) for k, v in row.items()}
            for row in rows
        ]
        conn.exec_driver_sql(sql, bound)

    def _bind(self, conn: Connection, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        sql, processors = self._prepared(conn)
        return sql, {k: (processors[k](v) if k in processors else v) for k, v in params.items()}

    def _prepared(self, conn: Connection) -> tuple[str, dict[str, Any]]:
        ready = self._ready.get(conn.dialect.name)
        if ready is None:
            ready = self._ready[conn.dialect.name] = self._prepare(conn.dialect)
        return ready

    def _prepare(self, dialect: Any) -> tuple[str, dict[str, Any]]:
        names = set(_PLACEHOLDER.findall(self.sql))
        assert names <= set(self.types), f"a placeholder without a type: {names - set(self.types)}"
        sql = self.sql
        if dialect.paramstyle == "pyformat":
            sql = _PLACEHOLDER.sub(r"%(\1)s", sql)
        elif dialect.paramstyle not in ("named", "qmark"):  # sqlite3 takes :name either way
            raise NotImplementedError(f"driver SQL for the {dialect.paramstyle} style")
        processors = {}
        for name, type_ in self.types.items():
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[name] = process
        return sql, processors


class DriverInsert:
    """`INSERT INTO table` of the columns each row names, as driver SQL (one statement per set
    of names, built once). A column a row leaves out gets its scalar Python default, as Core
    gives it; one without (and without a server default) must be nullable: checked when the
    statement is built, so a missing value is an error here, not a NULL in the table."""

    def __init__(self, table: Table, returning: str | None = None) -> None:
        self.table = table
        self.returning = returning
        self._by_names: dict[frozenset[str], tuple[DriverSQL, dict[str, Any]]] = {}

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        groups: dict[frozenset[str], list[Mapping[str, Any]]] = {}
        for row in rows:
            groups.setdefault(frozenset(row), []).append(row)
        for names, group in groups.items():
            statement, defaults = self._for(names)
            statement.many(conn, [{**defaults, **row} for row in group] if defaults else group)

    def scalar(self, conn: Connection, row: Mapping[str, Any]) -> Any:
        """Insert one row; the value of the `returning` column."""
        assert self.returning is not None
        statement, defaults = self._for(frozenset(row))
        return statement.scalar(conn, {**defaults, **row} if defaults else row)

    def _for(self, names: frozenset[str]) -> tuple[DriverSQL, dict[str, Any]]:
        found = self._by_names.get(names)
        if found is None:
            found = self._by_names[names] = self._build(names)
        return found

    def _build(self, names: frozenset[str]) -> tuple[DriverSQL, dict[str, Any]]:
        unknown = names - set(self.table.c.keys())
        assert not unknown, f"{self.table.name} has no column {sorted(unknown)}"
        defaults: dict[str, Any] = {}
        for column in self.table.c:
            if column.name in names or column.server_default is not None:
                continue
            default = column.default
            if default is not None and getattr(default, "is_scalar", False):
                defaults[column.name] = default.arg  # type: ignore[attr-defined]
            elif not column.nullable and not (column.primary_key and column.autoincrement):
                raise ValueError(f"{self.table.name}.{column.name} needs a value")
        columns = [c.name for c in self.table.c if c.name in names or c.name in defaults]
        sql = (
            f"INSERT INTO {self.table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )
        if self.returning is not None:
            sql += f" RETURNING {self.returning}"
        return DriverSQL(sql, {c: self.table.c[c].type for c in columns}), defaults
