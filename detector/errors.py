"""The one exception base of the package; subclasses live next to what raises them.

::

    DetectorError                  every error the detector raises on purpose
    ├── ConfigError                alerts.yaml is invalid: each problem with its key path
    │                              (detector.config)
    ├── DatabaseUrlError           a database URL that cannot be opened, with what to write
    │                              instead (detector.db)
    ├── SourceError                the payments database cannot be read (detector.source)
    │   └── SchemaError            the configured table or a column does not exist
    ├── StoreError                 the state database cannot be read or written
    │   │                          (detector.store)
    │   └── FencedOut              a tick was not saved: this replica lost the leader lease
    └── DeliveryError              a receiver could not deliver; ``retryable`` says whether
                                   trying again can help (detector.notify.base)

A tick never raises for bad rows (they are counted and skipped). ``SourceError`` on
``schedule.source_down_after`` ticks in a row raises the ``source_down`` alert; a retryable
``DeliveryError`` puts the notification back in the outbox for a later attempt.
"""

__all__ = ["DetectorError"]


class DetectorError(Exception):
    """Base class of every error the detector raises on purpose."""
