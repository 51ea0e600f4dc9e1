"""Clock offsets from round trips (resilience.load.clock_sync), on hand-made samples."""

import pytest

from resilience.load.clock_sync import SHARED, ClockSample, ClockSync, combine, estimate, shared


def test_symmetric_round_trip_gives_the_true_offset():
    # remote clock is 100 s ahead; 10 ms each way: sent 5.00, remote reads 105.01, back at 5.02
    sync = estimate([ClockSample(5.0, 105.01, 5.02)], "test")
    assert sync.offset_s == pytest.approx(100.0)
    assert sync.uncertainty_s == pytest.approx(0.01)


def test_asymmetric_delay_stays_within_the_stated_uncertainty():
    # true offset 100 s; 1 ms out, 39 ms back: the estimate is off by 19 ms, and says ± 20 ms
    sync = estimate([ClockSample(5.0, 105.001, 5.040)], "test")
    assert abs(sync.offset_s - 100.0) <= sync.uncertainty_s
    assert sync.uncertainty_s == pytest.approx(0.02)


def test_the_shortest_round_trip_wins():
    samples = [ClockSample(0.0, 50.3, 0.5), ClockSample(1.0, 51.001, 1.002), ClockSample(2.0, 52.2, 2.3)]
    sync = estimate(samples, "test")
    assert sync.uncertainty_s == pytest.approx(0.001)
    assert sync.offset_s == pytest.approx(50.0)
    assert sync.samples == 3


def test_no_usable_sample_is_an_error_not_a_zero_offset():
    with pytest.raises(ValueError):
        estimate([ClockSample(2.0, 9.0, 1.0)], "test")
    with pytest.raises(ValueError):
        estimate([], "test")


def test_combined_offsets_add_and_so_do_their_bounds():
    total = combine(ClockSync(1.5, 0.002, "a", 3), ClockSync(-0.5, 0.010, "b", 4))
    assert total.offset_s == pytest.approx(1.0)
    assert total.uncertainty_s == pytest.approx(0.012)
    assert combine(shared(), shared()).method == SHARED
    assert ClockSync.from_json(total.to_json()) == total
    assert total.to_local(total.to_remote(7.0)) == pytest.approx(7.0)
