"""The one exception base of the package; subclasses live next to what raises them."""

__all__ = ["DetectorError"]


class DetectorError(Exception):
    """Base class of every error the detector raises on purpose."""
