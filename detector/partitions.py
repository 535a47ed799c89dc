"""Which partition a gateway, or an alert, belongs to when ``ha.partitions`` splits the
gateways over several replicas.

A gateway's partition is a stable hash of its name (the same on every replica, Python
version and restart, unlike :func:`hash`); an alert belongs to its gateway's partition, and
an alert of no gateway (``source_down``, the business volumes) to partition 0, whose holder
does the work that is not per gateway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["GLOBAL_PARTITION", "Scope", "owner", "partition_of", "partitioned"]

# The partition whose holder also does the work of no gateway.
GLOBAL_PARTITION = 0


def partition_of(gateway: str, partitions: int) -> int:
    """The partition of ``gateway`` among ``partitions``.

    >>> partition_of("stripe", 1), partition_of("stripe", 3), partition_of("klarna", 3)
    (0, 2, 0)
    """
    if partitions == 1:
        return GLOBAL_PARTITION
    digest = hashlib.blake2b(gateway.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def owner(labels: Mapping[str, str], partitions: int) -> int:
    """The partition of an alert (or a resolution mark) with these labels.

    >>> owner({"gateway": "stripe"}, 3), owner({"rule": "source_down"}, 3)
    (2, 0)
    """
    gateway = labels.get("gateway")
    return GLOBAL_PARTITION if gateway is None else partition_of(gateway, partitions)


def partitioned(gateways: Iterable[str], partitions: int, held: Iterable[int]) -> list[str]:
    """The gateways among ``gateways`` that belong to the ``held`` partitions, sorted.

    >>> partitioned(["mollie", "stripe", "klarna", "braintree"], 3, [0, 1])
    ['braintree', 'klarna', 'mollie']
    """
    mine = set(held)
    return sorted(g for g in set(gateways) if partition_of(g, partitions) in mine)


@dataclass(frozen=True)
class Scope:
    """The partitions a replica holds out of ``count``: what its tick may read and write.

    >>> Scope(3, frozenset({0})).owns({"gateway": "klarna"}), Scope(3, frozenset({0})).owns({})
    (True, True)
    """

    count: int
    held: frozenset[int]

    def owns(self, labels: Mapping[str, str]) -> bool:
        """Whether the alert (or resolution mark) with these labels is in a held partition."""
        return owner(labels, self.count) in self.held
