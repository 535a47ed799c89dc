"""Payment-failure anomaly detector."""

__version__ = "0.1.0"
