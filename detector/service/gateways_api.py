"""``/api/v1/gateways`` of one tick: each gateway's JSON object is written once, on the first
request after the tick, and every answer until the next tick joins those objects.

The whole list, a filter (``status``, ``gateway``) and a page (``limit``, ``after``) then
cost a selection on the health arrays and a join, not a serialisation of thousands of
gateways per request. Pages go in name order and ``after`` is a gateway name (the ``next``
of the previous page), so a page boundary holds however the gateways change between ticks.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detector.service.health import STATUSES, gateways_document
from detector.service.snapshot import Snapshot

__all__ = ["GatewaysAnswers", "gateways_json"]

# Compact: with ``indent`` the json module drops its C encoder.
_COMPACT = (",", ":")


class GatewaysAnswers:
    """Every ``/api/v1/gateways`` answer about one snapshot."""

    def __init__(self, snapshot: Snapshot):
        health = snapshot.health
        self._health = health
        document = gateways_document(health, snapshot.at, snapshot.role, chosen=())
        statuses = dict(zip(health.gateways, (STATUSES[s] for s in health.status), strict=True))
        self._objects = [
            json.dumps(row.to_dict(statuses), separators=_COMPACT)
            for row in health.pick(range(len(health)))
        ]
        head = json.dumps(document, separators=_COMPACT)
        self._head = head[: -len("]}")]  # ends in "gateways":[
        self._row = {gateway: i for i, gateway in enumerate(health.gateways)}
        self._by_name = sorted(range(len(health)), key=health.gateways.__getitem__)
        self._names = [health.gateways[i] for i in self._by_name]
        self.everything = self._joined(range(len(health)))

    def answer(
        self,
        statuses: Sequence[str] = (),
        gateway: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> bytes:
        """The gateways with one of ``statuses`` (any if none) named ``gateway`` (any if
        None); with ``limit`` or ``after``, in name order: those named after ``after``, at
        most ``limit`` of them, and ``next`` (the ``after`` of the following page, null on
        the last)."""
        if not statuses and gateway is None and limit is None and after is None:
            return self.everything
        chosen = self._health.matching(statuses)
        if gateway is not None:
            row = self._row.get(gateway, -1)
            chosen = chosen[chosen == row]
        if limit is None and after is None:
            return self._joined(chosen.tolist())
        paged = self._in_name_order(chosen, after)
        following = None
        if limit is not None and len(paged) > limit:
            paged = paged[:limit]
            following = self._health.gateways[paged[-1]]
        return self._joined(paged, ',"next":' + json.dumps(following))

    def _in_name_order(self, chosen: npt.NDArray[np.intp], after: str | None) -> list[int]:
        first = 0 if after is None else bisect.bisect_right(self._names, after)
        rows = self._by_name[first:]
        if len(chosen) == len(self._health):
            return rows
        keep = np.zeros(len(self._health), dtype=np.bool_)
        keep[chosen] = True
        return [i for i in rows if keep[i]]

    def _joined(self, rows: Sequence[int], tail: str = "") -> bytes:
        objects = ",".join([self._objects[i] for i in rows])
        return f"{self._head}{objects}]{tail}}}\n".encode()


def gateways_json(
    snapshot: Snapshot, statuses: Sequence[str] = (), gateway: str | None = None
) -> str:
    """One ``/api/v1/gateways`` answer about ``snapshot``, for callers outside the server."""
    return GatewaysAnswers(snapshot).answer(statuses, gateway).decode()
