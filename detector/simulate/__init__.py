"""Synthetic payment streams with injected incidents (demo, tests, benchmarks).

Traffic model, per gateway and UTC minute:

- volume ~ Poisson(``per_minute`` x diurnal factor x weekly factor x incident ``volume_factor``);
  the diurnal curve is quiet around 03:00-05:00 UTC (~15% of the daily average) and peaks in
  the evening (~170% around 19:30); Saturdays and Sundays carry 80% of a weekday;
- each payment fails with the minute's failure probability: the gateway's ``failure_rate``
  (or the incident's), drawn per minute from a Beta distribution when ``dispersion_rho > 0``
  so failures come in bursts as they do in real traffic (beta-binomial counts);
- failures caused by an incident carry ``gateway_timeout``; the others carry the gateway's
  usual error codes; a small share of payments is still ``pending`` (no error code);
- each final payment takes a log-normal latency (median 300 ms, p95 about 680 ms; an
  incident's ``latency`` sets the p95), pending ones have none.

Each UTC day is drawn from its own random stream (seed, day), so a range gives the same
payments whether it is generated in one call or day by day, which is how `simulate` keeps
memory bounded. The per-minute counts come first in that stream: `minute_counts` draws only
them (months of busy gateways without a row per payment, as the detection benchmark needs)
and `generate` expands the very same counts into payment rows.

>>> from datetime import datetime
>>> frame = generate(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 10), seed=1)
>>> list(frame.columns)  # doctest: +NORMALIZE_WHITESPACE
['id', 'created_at', 'gateway', 'status', 'error_code', 'amount', 'currency', 'method',
 'country', 'latency_ms']
>>> frame.equals(generate(datetime(2026, 11, 20, 18), datetime(2026, 11, 20, 18, 10), seed=1))
True
"""

from detector.simulate.counts import MinuteCounts, minute_counts
from detector.simulate.database import simulate, write
from detector.simulate.gateways import DEFAULT_GATEWAYS, GatewayProfile
from detector.simulate.incidents import Incident
from detector.simulate.payments import generate
from detector.simulate.schema import create_schema
from detector.simulate.seasons import Seasons

__all__ = [
    "DEFAULT_GATEWAYS",
    "GatewayProfile",
    "Incident",
    "MinuteCounts",
    "Seasons",
    "create_schema",
    "generate",
    "minute_counts",
    "simulate",
    "write",
]
