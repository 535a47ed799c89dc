"""``volumes:``: business volumes (sales, sign-ups, visits) counted per minute from tables of
the user's database and watched by the ``volume_drop`` and ``no_data`` rules."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator

from detector.config.base import FrozenModel
from detector.config.source import RESERVED_LABELS, DatabaseUrl, Identifier, TableName

__all__ = ["VOLUME_LABEL", "VolumeConfig", "check_volume_name"]

# The label naming the volume on its alerts: {rule: volume_drop, volume: sales}.
VOLUME_LABEL = "volume"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_volume_name(value: Any) -> str:
    """A volume's name: a label value and a page heading, so a plain word."""
    if not _NAME.match(str(value)):
        raise ValueError(
            f"{value!r} is not a plain name for a volume (letters, digits and underscores)"
        )
    return str(value)


# A value a ``where`` column may take: bound as a parameter, never written into the SQL.
WhereValue = str | int


class VolumeConfig(FrozenModel):
    """One volume: the rows of ``table`` counted per minute of ``timestamp``."""

    table: TableName
    timestamp: Identifier = "created_at"
    # Column -> the values a counted row may have there, e.g. {status: [paid]}.
    where: dict[Identifier, tuple[WhereValue, ...]] = {}
    # Dimension columns: one series (and one alert) per combination of their values.
    by: tuple[Identifier, ...] = ()
    # The database holding ``table``; unset: source.url's.
    url: DatabaseUrl | None = None

    @field_validator("where")
    @classmethod
    def _values_listed(
        cls, value: dict[str, tuple[WhereValue, ...]]
    ) -> dict[str, tuple[WhereValue, ...]]:
        for column, allowed in value.items():
            if not allowed:
                raise ValueError(f"{column}: list at least one value a counted row may have")
        return value

    @field_validator("by")
    @classmethod
    def _by_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for column in value:
            if not _NAME.match(column):
                raise ValueError(f"{column!r}: a column split by must be a Prometheus label name")
            if column in RESERVED_LABELS or column == VOLUME_LABEL:
                raise ValueError(
                    f"{column!r} is a label the detector sets itself; a volume cannot be "
                    "split by it"
                )
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return value


VolumeName = Annotated[str, BeforeValidator(check_volume_name)]
