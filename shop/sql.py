"""SQL written once for the busiest paths (add to cart, checkout), run through Piccolo's engines.

Piccolo builds a query's SQL anew on every run: walking the columns, the joins and the nested
query strings. On the checkout path that cost more CPU than SQLite took to run the statements.
A `Statement` is its SQL text, compiled once per database dialect; each run only passes the
values. It runs through the table's engine like any Piccolo query, so it joins the transaction
in progress, uses the connection pool, and is counted by the query-count tests."""
from __future__ import annotations

from typing import Any

from piccolo.columns import Column
from piccolo.columns.defaults.base import Default
from piccolo.querystring import QueryString
from piccolo.table import Table


class Statement:
    """One parameterised statement: `{}` marks each value, as in Piccolo's `Table.raw`."""

    __slots__ = ("table", "template", "_compiled")

    def __init__(self, table: type[Table], template: str) -> None:
        self.table = table
        self.template = " ".join(template.split())
        parts = self.template.split("{}")
        self._compiled = {
            "sqlite": "?".join(parts),
            "postgres": "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, 1)),
        }

    async def rows(self, *values: Any) -> list[dict[str, Any]]:
        engine = self.table._meta.db
        query = QueryString(self.template, *values, table=self.table)
        # Piccolo's own slot for SQL compiled in advance (what `Query.freeze()` fills in).
        query._frozen_compiled_strings = (self._compiled[engine.engine_type], list(values))
        return [dict(row) for row in await engine.run_querystring(query)]

    async def first(self, *values: Any) -> dict[str, Any] | None:
        rows = await self.rows(*values)
        return rows[0] if rows else None

    def __repr__(self) -> str:
        return f"Statement({self.template!r})"


def _default(column: Column) -> Any:
    value = column.get_default_value()
    return value.python() if isinstance(value, Default) else value


class Insert:
    """INSERT of one whole row, its SQL built once from the table's columns. A column not named
    takes its Piccolo default, computed per row as `Table(...)` would (timestamps are now).
    `if_new=True` skips a row that a unique index already holds (`rows` is then empty)."""

    __slots__ = ("_columns", "statement")

    def __init__(self, table: type[Table], returning: str = "id", if_new: bool = False) -> None:
        # Every column but the primary key, by its name in the database.
        self._columns = {column._meta.db_column_name: column for column in table._meta.non_default_columns}
        names = ", ".join(f'"{name}"' for name in self._columns)
        marks = ", ".join("{}" for _ in self._columns)
        conflict = " ON CONFLICT DO NOTHING" if if_new else ""
        self.statement = Statement(
            table, f'INSERT INTO "{table._meta.tablename}" ({names}) VALUES ({marks}){conflict} RETURNING {returning}')

    async def rows(self, **values: Any) -> list[dict[str, Any]]:
        unknown = values.keys() - self._columns.keys()
        if unknown:
            raise TypeError(f"no such columns: {', '.join(sorted(unknown))}")
        return await self.statement.rows(*(
            values[name] if name in values else _default(column) for name, column in self._columns.items()))

    async def row(self, **values: Any) -> dict[str, Any]:
        return (await self.rows(**values))[0]


class Update:
    """UPDATE of one row by id: one statement per set of columns changed together, built on
    first use (a row's changes come in a handful of shapes)."""

    __slots__ = ("table", "_statements")

    def __init__(self, table: type[Table]) -> None:
        self.table = table
        self._statements: dict[tuple[str, ...], Statement] = {}

    async def row(self, row_id: int, values: dict[str, Any]) -> None:
        names = tuple(values)
        statement = self._statements.get(names)
        if statement is None:
            for name in names:  # only real columns make it into SQL
                if self.table._meta.get_column_by_name(name)._meta.db_column_name != name:
                    raise ValueError(f"{name!r} is not a column of {self.table._meta.tablename}")
            assignments = ", ".join(f'"{name}" = {{}}' for name in names)
            statement = self._statements[names] = Statement(
                self.table, f'UPDATE "{self.table._meta.tablename}" SET {assignments} WHERE id = {{}}')
        await statement.rows(*values.values(), row_id)
