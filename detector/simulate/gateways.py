"""Simulated gateways: their traffic, failure rate, burstiness and error codes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_GATEWAYS", "GatewayProfile"]


@dataclass(frozen=True)
class GatewayProfile:
    """Traffic of one simulated gateway.

    Parameters
    ----------
    name : str
        Gateway name as stored in the ``gateway`` column.
    per_minute : float
        Mean payments per minute on a weekday, averaged over the day.
    failure_rate : float
        Usual probability that a payment fails.
    dispersion_rho : float
        Intra-minute correlation of failures (beta-binomial); 0 gives plain binomial counts.
    error_codes : tuple of (code, weight)
        Error codes of ordinary failures and their relative frequencies.
    decline_rate : float
        Daily average share of the payments that do not fail which the payer's issuer
        declines (written ``failed`` with one of ``decline_codes``); 0 draws none.
    decline_swing : float
        Relative amplitude of the declines' diurnal swing, in [0, 1): the share peaks
        at ``decline_rate * (1 + decline_swing)`` at 03:00 UTC, when little but risky
        traffic is about, and is lowest at 15:00 UTC.
    decline_codes : tuple of (code, weight)
        Error codes of declines and their relative frequencies.
    """

    name: str
    per_minute: float
    failure_rate: float
    dispersion_rho: float = 0.0
    error_codes: tuple[tuple[str, float], ...] = (
        ("card_declined", 0.45),
        ("insufficient_funds", 0.25),
        ("do_not_honor", 0.15),
        ("processing_error", 0.10),
        ("timeout", 0.05),
    )
    decline_rate: float = 0.0
    decline_swing: float = 0.5
    decline_codes: tuple[tuple[str, float], ...] = (
        ("insufficient_funds", 0.5),
        ("do_not_honor", 0.3),
        ("expired_card", 0.2),
    )

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 40:
            raise ValueError("a gateway name must have between 1 and 40 characters")
        if not self.per_minute >= 0:
            raise ValueError(f"gateway {self.name}: per_minute must be zero or more")
        if not 0 <= self.failure_rate <= 1:
            raise ValueError(f"gateway {self.name}: failure_rate must be between 0 and 1")
        if not 0 <= self.dispersion_rho < 1:
            raise ValueError(f"gateway {self.name}: dispersion_rho must be in [0, 1)")
        if not self.error_codes or any(weight <= 0 for _, weight in self.error_codes):
            raise ValueError(f"gateway {self.name}: give at least one error code, all weights > 0")
        if not 0 <= self.decline_swing < 1:
            raise ValueError(f"gateway {self.name}: decline_swing must be in [0, 1)")
        if not 0 <= self.decline_rate <= 1 / (1 + self.decline_swing):
            raise ValueError(
                f"gateway {self.name}: decline_rate * (1 + decline_swing) must be in [0, 1]"
            )
        if not self.decline_codes or any(weight <= 0 for _, weight in self.decline_codes):
            raise ValueError(f"gateway {self.name}: give at least one decline code, weights > 0")


# name, payments a minute on a weekday, usual failure rate, dispersion rho
_DEFAULT_TRAFFIC = (
    ("stripe", 40.0, 0.010, 0.002),
    ("adyen", 20.0, 0.012, 0.002),
    ("paypal", 8.0, 0.015, 0.001),
    ("braintree", 2.0, 0.008, 0.0),
    ("razorpay", 0.5, 0.014, 0.0),
)
# The error codes of each gateway's ordinary failures, with their relative frequencies.
_DEFAULT_ERROR_CODES = {
    "stripe": {
        "card_declined": 0.40,
        "insufficient_funds": 0.25,
        "processing_error": 0.13,
        "expired_card": 0.12,
        "incorrect_cvc": 0.10,
    },
    "adyen": {
        "refused": 0.40,
        "not_enough_balance": 0.25,
        "do_not_honor": 0.15,
        "acquirer_error": 0.12,
        "timeout": 0.08,
    },
    "paypal": {
        "instrument_declined": 0.50,
        "payer_cannot_pay": 0.25,
        "processing_error": 0.15,
        "timeout": 0.10,
    },
    "braintree": {
        "processor_declined": 0.45,
        "insufficient_funds": 0.30,
        "do_not_honor": 0.15,
        "gateway_rejected": 0.10,
    },
    "razorpay": {
        "payment_failed": 0.40,
        "insufficient_funds": 0.25,
        "authentication_failed": 0.20,
        "bank_timeout": 0.15,
    },
}

DEFAULT_GATEWAYS: tuple[GatewayProfile, ...] = tuple(
    GatewayProfile(name, per_minute, failure_rate, rho, tuple(_DEFAULT_ERROR_CODES[name].items()))
    for name, per_minute, failure_rate, rho in _DEFAULT_TRAFFIC
)
