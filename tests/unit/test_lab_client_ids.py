"""The lab client's write ids: a module's scenarios start one client after another against one
table, so a later client must start past every id an earlier one wrote."""

from __future__ import annotations

import time

from tandem_lab.client import first_id


def test_an_explicit_start_id_is_kept() -> None:
    assert first_id(7) == 7


def test_a_later_client_starts_past_everything_an_earlier_one_wrote() -> None:
    earlier = first_id(None)
    time.sleep(0.01)
    later = first_id(None)
    # An earlier client writing flat out (one id per 20 ms interval) for 10 ms wrote at most
    # one id; the clock moved 10,000 ids on.
    assert later >= earlier + 10_000


def test_ids_fit_the_bigint_column() -> None:
    assert 0 < first_id(None) < 2**63
