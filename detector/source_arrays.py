"""An aggregate query's result read straight into numpy arrays, a chunk at a time.

A tick's counts are one row per (gateway, minute): at ten thousand gateways the warm-up
read alone is millions of rows, too many to hold as a Python tuple (and a SQLAlchemy
``Row``) each. Here every chunk of rows becomes a few arrays at once and is dropped: the
integer columns are ``int64`` columns, each text column an ``int32`` code per row into
its distinct values, so a read holds 4 bytes per text cell and 8 per integer cell, plus
one chunk in flight.

- PostgreSQL (psycopg 3): ``COPY (SELECT ...) TO STDOUT``, whose text is parsed by
  pandas' C reader chunk by chunk; no Python object is made per row. The parameters are
  bound by psycopg, as for any statement.
- DuckDB: its own result, a pandas frame of about ``CHUNK_ROWS`` rows at a time
  (``fetch_df_chunk``): columnar from the engine to the arrays, no tuple per row.
- Any other database: the driver's cursor, ``fetchmany`` a chunk at a time (server-side
  where the dialect streams, as PyMySQL's unbuffered cursor does).

A query selects each column it reads as text through :func:`as_text`, so that a label of a
numeric column reads as the database writes it ("1", not "1.0").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["CHUNK_ROWS", "Columns", "as_text", "read_columns"]

IntArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.int32]
ObjectArray = npt.NDArray[np.object_]

# Rows converted at once by the cursor path; about 10 MB of tuples in flight.
CHUNK_ROWS = 50_000
# DuckDB's vectors (2,048 rows each) per chunk: about CHUNK_ROWS rows.
_DUCKDB_VECTORS = 25
# Bytes of COPY text parsed at once (about 300,000 rows of counts).
_COPY_CHUNK_BYTES = 8 << 20
# COPY's text format: tab-separated, NULL as \N, special characters backslash-escaped.
_COPY_ESCAPES = {
    "\\\\": "\\",
    "\\t": "\t",
    "\\n": "\n",
    "\\r": "\r",
    "\\b": "\b",
    "\\f": "\f",
    "\\v": "\v",
}


class as_text(FunctionElement[str]):
    """A column of labels (a gateway, a dimension) as :func:`read_columns` reads text: on
    DuckDB cast to ``VARCHAR`` in the query, since its result frames carry an integer
    column with NULLs (under pandas 2), a ``HUGEINT`` or a ``DECIMAL`` as floats, which
    would read "1.0"; elsewhere the column as it is (the drivers give integers, decimals
    and text, which read as the database writes them). NULL stays NULL.

    >>> from sqlalchemy.dialects import sqlite
    >>> str(sa.select(as_text(sa.column("store")).label("d0")).compile(dialect=sqlite.dialect()))
    'SELECT store AS d0'
    """

    type = sa.String()
    inherit_cache = True
    name = "as_text"


@compiles(as_text)
def _as_it_is(element: as_text, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(as_text, "duckdb")
def _cast_to_varchar(element: as_text, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS VARCHAR)"


@dataclass(frozen=True)
class Columns:
    """A query result column by column.

    ``codes[i]`` holds, per row, the index of the row's value of text column ``i`` in
    ``names[i]``, or -1 for NULL; ``integers`` holds the integer columns (NULL read as 0).
    """

    codes: list[CodeArray]
    names: list[ObjectArray]
    # One array per integer column: a column kept (as a Counts' minutes) holds no other.
    integers: list[IntArray]

    @property
    def rows(self) -> int:
        return int(self.integers[0].size) if self.integers else int(self.codes[0].size)

    def text(self, column: int, null: object = None) -> ObjectArray:
        """Text column ``column`` as one object per row (the distinct values shared), NULL
        read as ``null``.

        >>> c = Columns([np.array([1, -1, 1], dtype=np.int32)],
        ...             [np.array(["a", "b"], dtype=object)], [])
        >>> c.text(0, null="(none)").tolist()
        ['b', '(none)', 'b']
        """
        # Code -1 picks the value appended last.
        values = np.append(self.names[column], np.array([null], dtype=object))
        return values[self.codes[column]]


def read_columns(
    connection: sa.Connection,
    query: sa.Select[Any],
    params: Mapping[str, Any],
    kinds: str,
) -> Columns:
    """Run ``query`` and read its result into arrays.

    ``kinds`` has one letter per result column: ``t`` text, ``i`` integer.
    """
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        chunks = _copy_chunks(connection, query, params, kinds)
    elif connection.dialect.name == "duckdb":
        chunks = _duckdb_chunks(connection, query, params, kinds)
    else:
        chunks = _cursor_chunks(connection, query, params, kinds)
    return _joined(chunks, kinds)


class _Collector:
    """Gathers the chunks of one text column as codes into the distinct values seen."""

    def __init__(self, escaped: bool):
        self.escaped = escaped
        self.index: dict[object, int] = {}
        self.codes: list[CodeArray] = []

    def add(self, values: npt.NDArray[Any]) -> None:
        # pandas' factorize hashes in C; only the distinct values pass through Python.
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        mapping = np.array(
            [self.index.setdefault(value, len(self.index)) for value in uniques] + [-1],
            dtype=np.int32,
        )
        self.codes.append(mapping[codes])  # code -1 (NULL) maps to the appended -1

    def names(self) -> ObjectArray:
        values = [_unescaped(v) if self.escaped else str(v) for v in self.index]
        names = np.empty(len(values), dtype=object)
        names[:] = values
        return names


def _unescaped(value: object) -> str:
    text = str(value)
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _COPY_ESCAPES:
            out.append(_COPY_ESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# One array per result column, and whether its text is COPY's (backslash-escaped).
_Chunk = tuple[list[npt.NDArray[Any]], bool]


def _joined(chunks: Iterator[_Chunk], kinds: str) -> Columns:
    texts = [i for i, kind in enumerate(kinds) if kind == "t"]
    integers = [i for i, kind in enumerate(kinds) if kind == "i"]
    collectors: list[_Collector] | None = None
    parts: list[list[IntArray]] = [[] for _ in integers]
    for chunk, escaped in chunks:
        if collectors is None:
            collectors = [_Collector(escaped) for _ in texts]
        for collector, column in zip(collectors, texts, strict=True):
            collector.add(chunk[column])
        for part, column in zip(parts, integers, strict=True):
            part.append(chunk[column])
    if collectors is None:
        collectors = [_Collector(False) for _ in texts]
    return Columns(
        [_concatenated(c.codes, np.int32) for c in collectors],
        [c.names() for c in collectors],
        [_concatenated(part, np.int64) for part in parts],
    )


def _concatenated(parts: list[npt.NDArray[Any]], dtype: type[Any]) -> npt.NDArray[Any]:
    """The chunks of one column as one array, each released once joined: a read's peak
    holds one column twice, not all of them."""
    whole = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    parts.clear()
    return whole


def _cursor_chunks(
    connection: sa.Connection, query: sa.Select[Any], params: Mapping[str, Any], kinds: str
) -> Iterator[_Chunk]:
    """The driver's rows, ``CHUNK_ROWS`` at a time, as one array per column."""
    result = connection.execution_options(stream_results=True).execute(query, dict(params))
    # The fetch strategy hands out the driver's plain tuples (those it buffered first
    # included) and wraps driver errors as SQLAlchemy's: no Row is made per row.
    strategy, cursor = result.cursor_strategy, result.cursor
    try:
        more = True
        while more:
            rows = strategy.fetchmany(result, cursor, CHUNK_ROWS)
            # A short chunk is the last: the strategy has closed the cursor after it.
            more = len(rows) == CHUNK_ROWS
            if not rows:
                break
            table = np.empty((len(rows), len(kinds)), dtype=object)
            table[:] = rows
            del rows
            columns: list[npt.NDArray[Any]] = []
            for i, kind in enumerate(kinds):
                column = table[:, i]
                if kind == "i":
                    column = np.where(column == None, 0, column).astype(np.int64)  # noqa: E711
                columns.append(column)
            yield columns, False
    finally:
        result.close()


def _duckdb_chunks(
    connection: sa.Connection, query: sa.Select[Any], params: Mapping[str, Any], kinds: str
) -> Iterator[_Chunk]:
    """DuckDB: the result as pandas frames of ``_DUCKDB_VECTORS`` vectors each."""
    result = connection.execute(query, dict(params))
    # duckdb-engine's cursor passes attributes through to the DuckDB connection, which
    # holds the result of the statement just run.
    cursor: Any = result.cursor
    try:
        while True:
            try:
                frame = cursor.fetch_df_chunk(_DUCKDB_VECTORS)
            except connection.dialect.loaded_dbapi.Error as exc:
                # As SQLAlchemy handles a failed statement: its handle_error hooks run.
                connection._handle_dbapi_exception(exc, str(query), dict(params), cursor, None)
            if frame.empty:
                break
            columns: list[npt.NDArray[Any]] = []
            for name, kind in zip(frame.columns, kinds, strict=True):
                column = frame[name]
                if kind == "t":
                    columns.append(column.to_numpy(dtype=object))
                elif pd.api.types.is_integer_dtype(column.dtype):
                    columns.append(column.to_numpy(dtype=np.int64))
                else:  # a SUM is a HUGEINT, read as float64 (exact below 2**53), NULL as NaN
                    columns.append(
                        np.nan_to_num(column.to_numpy(dtype=np.float64)).astype(np.int64)
                    )
            del frame
            yield columns, False
    finally:
        result.close()


def _copy_chunks(
    connection: sa.Connection, query: sa.Select[Any], params: Mapping[str, Any], kinds: str
) -> Iterator[_Chunk]:
    """PostgreSQL: the rows of ``COPY (query) TO STDOUT``, parsed a few megabytes at a time."""
    # IN lists expanded into one placeholder per value, as SQLAlchemy does when it executes.
    expanded = query.compile(dialect=connection.dialect).construct_expanded_state(dict(params))
    bound = expanded.parameters
    statement = f"COPY ({expanded.statement}) TO STDOUT"
    names = [f"c{i}" for i in range(len(kinds))]
    dtypes = {
        name: (object if kind == "t" else np.float64)
        for name, kind in zip(names, kinds, strict=True)
    }
    dbapi: Any = connection.connection.dbapi_connection  # psycopg's, with its copy()
    # The statement deadline and watchdog of detector.db are armed and disarmed by these
    # events, as for any statement SQLAlchemy runs.
    connection.dispatch.before_cursor_execute(connection, None, statement, bound, None, False)
    try:
        with dbapi.cursor() as cursor, cursor.copy(statement, bound) as copy:
            pending = bytearray()
            for block in copy:
                pending += block
                cut = pending.rfind(b"\n") + 1 if len(pending) >= _COPY_CHUNK_BYTES else 0
                if cut:  # whole lines only: a line ends at every unescaped newline
                    yield _parsed(bytes(pending[:cut]), names, dtypes), True
                    del pending[:cut]
            if pending:
                yield _parsed(bytes(pending), names, dtypes), True
    except connection.dialect.loaded_dbapi.Error as exc:
        # Handled as SQLAlchemy handles a failed statement: the handle_error hooks (a query
        # timeout says so), a broken connection (the watchdog shuts its socket) invalidated.
        connection._handle_dbapi_exception(exc, statement, bound, None, None)
    finally:
        connection.dispatch.after_cursor_execute(connection, None, statement, bound, None, False)


def _parsed(text: bytes, names: list[str], dtypes: Mapping[str, Any]) -> list[npt.NDArray[Any]]:
    frame = pd.read_csv(
        io.BytesIO(text),
        sep="\t",
        header=None,
        names=names,
        dtype=dtypes,
        na_values=["\\N"],
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        engine="c",
    )
    columns: list[npt.NDArray[Any]] = []
    for name in names:
        column = frame[name].to_numpy()
        if dtypes[name] is np.float64:
            column = np.nan_to_num(column).astype(np.int64)
        columns.append(column)
    return columns
