"""Row-group files: JSON Lines (built in) or Parquet (the ``parquet`` extra, pyarrow).

:func:`encode_rows` turns the passing rows of a row group into the bytes of one file. Both
formats are deterministic: the same rows give the same bytes (JSON keys in column order,
Parquet with a fixed writer configuration), so a file's content hash identifies its rows.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

import msgspec

from ..errors import ConfigurationError

OutputFormat: TypeAlias = Literal["jsonl", "parquet"]


OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("jsonl", "parquet")


SUFFIX: Final[dict[str, str]] = {"jsonl": ".jsonl", "parquet": ".parquet"}


_ENCODER: Final = msgspec.json.Encoder()


def require_format(output_format: str) -> None:
    """Raise :class:`ConfigurationError` if ``output_format`` cannot be written here."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigurationError(
            "output_format",
            f"unknown format {output_format!r}",
            "use 'jsonl' (built in) or 'parquet' (pip install 'sluicegate[parquet]')",
        )
    if output_format == "parquet":
        try:
            import pyarrow  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "output_format",
                "Parquet output needs pyarrow, which is not installed",
                "pip install 'sluicegate[parquet]' (or use output_format='jsonl')",
            ) from None


def encode_rows(rows: Sequence[dict[str, Any]], output_format: OutputFormat) -> bytes:
    """The file content of one row group."""
    if output_format == "jsonl":
        return _ENCODER.encode_lines(rows)
    return _parquet_bytes(rows)


def _parquet_bytes(rows: Sequence[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    table = pa.Table.from_pylist([msgspec.to_builtins(row) for row in rows])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True)
    return sink.getvalue()


def read_rows(path: str, output_format: OutputFormat) -> list[dict[str, Any]]:
    """The rows of one row-group file (for tests, previews and :meth:`RunResult.rows`)."""
    if output_format == "jsonl":
        with open(path, "rb") as f:
            return [msgspec.json.decode(line) for line in f if line.strip()]
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows
