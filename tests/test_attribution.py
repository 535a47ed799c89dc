"""Attribution of excess failures to dimension values, against hand-computed figures."""

from __future__ import annotations

import numpy as np
import pytest

from detector.stats.attribution import Attribution, attribute

DIMENSIONS = ("method", "country")


def _values(*rows: tuple[str, str]) -> np.ndarray:
    return np.array(rows, dtype=object)


def test_a_single_value_explaining_all_the_excess_beats_its_combinations() -> None:
    # At a 2% SLA the excess of each cell is max(k - 0.02 n, 0):
    #   card/BR 22 - 2 = 20, card/US 4 - 4 = 0, wallet/BR 6 - 1 = 5, wallet/US 3 - 3 = 0.
    # Lead of excess share over payment share: BR 25/25 - 150/500 = 0.7, card/BR
    # 20/25 - 100/500 = 0.6, card 20/25 - 300/500 = 0.2, wallet/BR 0.2 - 0.1 = 0.1.
    got = attribute(
        DIMENSIONS,
        _values(("card", "BR"), ("card", "US"), ("wallet", "BR"), ("wallet", "US")),
        [100, 200, 50, 150],
        [22, 4, 6, 3],
        0.02,
    )
    assert got == Attribution(DIMENSIONS, (("country", "BR"),), 1.0, 0.3, 25.0)


def test_a_combination_is_named_when_the_excess_is_confined_to_it() -> None:
    # wallet/BR now has 1 failure for 1 expected: all 20 excess failures are card/BR.
    # card/BR: 20/20 - 100/500 = 0.8 beats BR (1 - 0.3 = 0.7) and card (1 - 0.6 = 0.4).
    got = attribute(
        DIMENSIONS,
        _values(("card", "BR"), ("card", "US"), ("wallet", "BR"), ("wallet", "US")),
        [100, 200, 50, 150],
        [22, 4, 1, 3],
        0.02,
    )
    assert got is not None
    assert got.segment == (("method", "card"), ("country", "BR"))
    assert (got.excess_share, got.payments_share, got.excess_failures) == pytest.approx(
        (1.0, 0.2, 20.0)
    )


def test_excess_split_across_cells_gives_the_share_of_the_best_one() -> None:
    # Excess: card 40 - 8 = 32 (of 400 payments), wallet 8 - 2 = 6 (of 100), bank 0.
    # card: 32/38 - 400/600 = 0.175; wallet: 6/38 - 100/600 = -0.009. And card stands out:
    # 40 failures of 400 where the other payments fail at 9/200 = 4.5% has p = 3e-6.
    got = attribute(
        ("method",),
        np.array([["card"], ["wallet"], ["bank_transfer"]], dtype=object),
        [400, 100, 100],
        [40, 8, 1],
        0.02,
    )
    assert got is not None
    assert got.segment == (("method", "card"),)
    assert got.excess_share == pytest.approx(32 / 38)
    assert got.payments_share == pytest.approx(400 / 600)
    assert got.excess_failures == pytest.approx(38.0)


def test_a_segment_that_does_not_stand_out_is_not_named() -> None:
    # The same shape with 30 card failures: 30 of 400 at the others' 4.5% has p = 0.005,
    # what chance alone gives one segment among several.
    got = attribute(
        ("method",),
        np.array([["card"], ["wallet"], ["bank_transfer"]], dtype=object),
        [400, 100, 100],
        [30, 8, 1],
        0.02,
    )
    assert got == Attribution(("method",), (), 1.0, 1.0, 28.0)


def test_excess_in_proportion_to_payments_names_no_segment() -> None:
    # 10% failures everywhere: each value's excess share equals its payment share.
    got = attribute(
        DIMENSIONS,
        _values(("card", "BR"), ("card", "US"), ("wallet", "BR"), ("wallet", "US")),
        [100, 200, 100, 100],
        [10, 20, 10, 10],
        0.02,
    )
    assert got == Attribution(DIMENSIONS, (), 1.0, 1.0, 40.0)


@pytest.mark.parametrize(
    ("failures", "dimensions"),
    [
        ([2, 4], DIMENSIONS),  # exactly at the SLA: no excess
        ([5, 0], DIMENSIONS),  # below it overall, though card/BR is above
        ([30, 4], ()),  # no dimensions configured
    ],
)
def test_no_attribution_without_excess_or_dimensions(
    failures: list[int], dimensions: tuple[str, ...]
) -> None:
    values = _values(("card", "BR"), ("wallet", "US"))
    assert attribute(dimensions, values, [100, 200], failures, 0.02) is None


def test_no_attribution_without_payments() -> None:
    assert attribute(DIMENSIONS, _values(("card", "BR")), [0], [0], 0.02) is None
    empty = np.zeros((0, 2), dtype=object)
    assert attribute(DIMENSIONS, empty, [], [], 0.02) is None
