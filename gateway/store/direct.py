"""SQL for the intake hot path, run on the driver's own cursor inside a SQLAlchemy transaction.

SQLAlchemy Core costs over ten times the driver's own Python per statement (bench/README.md,
"The intake SQL"), and intake runs five statements per message, besides the transaction. The
hot path therefore writes its few statements out in SQL with ``:name`` parameters and runs them
on the DBAPI cursor of the connection SQLAlchemy already holds, in the same transaction.
Values are stored exactly as SQLAlchemy stores them: date-times go through the dialect's own
DateTime processors (SQLite keeps them as text), so ORM reads of these rows are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

_NAMED = re.compile(r":([a-z_][a-z0-9_]*)")


class Sql:
    """One statement with ``:name`` parameters; ``dates`` names its date-time parameters."""

    __slots__ = ("dates", "pyformat", "text")

    def __init__(self, text: str, dates: tuple[str, ...] = ()) -> None:
        self.text = " ".join(text.split())
        self.pyformat = _NAMED.sub(r"%(\1)s", self.text)
        self.dates = dates


class Direct:
    """Runs ``Sql`` on the driver cursor of a SQLAlchemy connection, in its transaction."""

    __slots__ = ("_bind", "_cursor", "_errors", "_pyformat", "_read")

    def __init__(self, conn: Connection) -> None:
        dialect = conn.dialect
        self._cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        self._pyformat = dialect.paramstyle == "pyformat"
        self._bind, self._read = _date_processors(dialect)
        self._errors: type[Exception] = dialect.loaded_dbapi.Error

    def execute(self, sql: Sql, params: Mapping[str, Any]) -> Any:
        """Run one statement; returns the driver cursor."""
        if sql.dates and self._bind is not None:
            params = dict(params)
            for name in sql.dates:
                params[name] = self._bind(params[name])
        text = sql.pyformat if self._pyformat else sql.text
        try:
            self._cursor.execute(text, params)
        except self._errors as exc:
            # As SQLAlchemy would raise it (IntegrityError, OperationalError, ...), so callers
            # and the store's error translation treat both paths alike.
            raise DBAPIError.instance(text, params, exc, self._errors) from exc
        return self._cursor

    def first(self, sql: Sql, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        row: tuple[Any, ...] | None = self.execute(sql, params).fetchone()
        return row

    def date(self, value: Any) -> datetime:
        """A date-time column's value as read back from the driver."""
        return value if self._read is None else self._read(value)  # type: ignore[no-any-return]


_PROCESSORS: dict[str, tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None]] = {}


def _date_processors(
    dialect: Dialect,
) -> tuple[Callable[[Any], Any] | None, Callable[[Any], Any] | None]:
    """The dialect's (bind, result) processors for ``DateTime(timezone=True)``, cached."""
    found = _PROCESSORS.get(dialect.name)
    if found is None:
        impl = DateTime(timezone=True).dialect_impl(dialect)
        found = (impl.bind_processor(dialect), impl.result_processor(dialect, None))
        _PROCESSORS[dialect.name] = found
    return found
