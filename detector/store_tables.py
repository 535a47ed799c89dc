"""The state database's tables (``detector_*``): their names, columns and indexes, on one
:data:`metadata` that :class:`~detector.store.StateStore` creates."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import LONGBLOB

__all__ = [
    "alerts",
    "attempts",
    "episodes",
    "history_gateways",
    "meta",
    "metadata",
    "outbox",
    "partition_gateways",
    "partition_hours",
    "quarter_hours",
    "silences",
]

metadata = sa.MetaData()

meta = sa.Table(
    "detector_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

alerts = sa.Table(
    "detector_alerts",
    metadata,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)

outbox = sa.Table(
    "detector_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("receiver", sa.String(100), nullable=False),
    # Entries of one receiver with the same group key are sent as one message.
    sa.Column("group_key", sa.String(64), nullable=False, default=""),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    sa.Column("failed_at", sa.DateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("receiver", "idempotency_key", name="uq_detector_outbox_delivery"),
    sa.Index("ix_detector_outbox_group", "receiver", "group_key"),
)

# One row per attempt at sending an outbox entry: when, how it went, what the receiver said.
attempts = sa.Table(
    "detector_delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("outbox_id", sa.Integer, nullable=False, index=True),
    sa.Column("attempted_at", sa.DateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered, retried, failed
    sa.Column("error", sa.Text, nullable=True),
)

silences = sa.Table(
    "detector_silences",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("matchers", sa.Text, nullable=False),  # {"match": {...}, "match_re": {...}}
    sa.Column("starts_at", sa.DateTime, nullable=False),
    sa.Column("ends_at", sa.DateTime, nullable=False, index=True),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)


# One row per alert from its start to its resolution: what the SLA report reads.
episodes = sa.Table(
    "detector_alert_episodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("rule", sa.String(64), nullable=False),
    sa.Column("gateway", sa.String(200), nullable=True),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("fired_at", sa.DateTime, nullable=True),
    sa.Column("resolved_at", sa.DateTime, nullable=False, index=True),
    sa.Index("ix_detector_alert_episodes_rule", "rule", "started_at"),
)

# The volume rules' weeks of quarter hours, an hour a row (QuarterHourTable.pack_hour), and
# the gateways those rows number. The meta keys history_end (the epoch quarter hour the
# weeks end at) and history_source (what they were read from) go with them.
quarter_hours = sa.Table(
    "detector_quarter_hours",
    metadata,
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),  # epoch hour
    sa.Column(
        "data", sa.LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), nullable=False
    ),
)


history_gateways = sa.Table(
    "detector_history_gateways",
    metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
)

# With ha.partitions: each partition's weeks of quarter hours, as the two tables above keep
# the single leader's (its meta keys end in "-p" and the partition's number), so that the
# replica taking a partition over reads back its weeks.
partition_hours = sa.Table(
    "detector_partition_hours",
    metadata,
    sa.Column("partition_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),  # epoch hour
    sa.Column(
        "data", sa.LargeBinary().with_variant(LONGBLOB(), "mysql", "mariadb"), nullable=False
    ),
)

partition_gateways = sa.Table(
    "detector_partition_gateways",
    metadata,
    sa.Column("partition_no", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
)
