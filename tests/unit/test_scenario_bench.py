"""The many-room scenario bench's population law and loss accounting (bench/scenario*)."""

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from scenario_client import account
from scenario_data import MIN_ROOM, assign, zipf_sizes


@pytest.mark.parametrize(
    "rooms,users,per_user",
    [(1000, 10000, 5), (100, 1000, 5), (30, 300, 2)],
    ids=["big", "quick", "tiny"],
)
def test_zipf_sizes_sum_and_shape(rooms, users, per_user):
    sizes = zipf_sizes(rooms, users, per_user)
    assert sum(sizes) == users * per_user
    assert len(sizes) == rooms
    assert min(sizes) >= MIN_ROOM
    assert max(sizes) <= users
    assert sizes[0] >= sizes[-1]


def test_zipf_sizes_rejects_impossible():
    with pytest.raises(ValueError):
        zipf_sizes(100, 10, 1)


def test_assign_gives_every_user_per_user_distinct_rooms():
    sizes = zipf_sizes(100, 1000, 5)
    members = assign(1000, sizes)
    assert [len(m) for m in members] == sizes
    assert all(len(set(m)) == len(m) for m in members)
    assert set(Counter(u for m in members for u in m).values()) == {5}


class FakeReceiver:
    def __init__(self, room, got, order_errors=0, counts=True):
        self.room, self.got, self.order_errors, self.counts = room, got, order_errors, counts


def test_account_counts_loss_dups_order_per_connection():
    sent_to = {0: [1, 2, 3], 1: [4]}
    receivers = [
        FakeReceiver(0, {1: 1, 2: 2, 3: 1}, order_errors=1),
        FakeReceiver(0, {1: 1}),
        FakeReceiver(1, {4: 1}),
        FakeReceiver(-1, {}, counts=False),  # an inbox: not a room delivery
    ]
    found = account(receivers, sent_to)
    assert found == {
        "expected": 7, "lost": 2, "duplicated": 1, "out_of_order": 1, "worst_connection_lost": 2
    }  # fmt: skip


def _step(rate, p99, lost=0, achieved=None):
    return {"rate_target": rate, "p99_ms": p99, "lost": lost, "rate_achieved": achieved or rate}


def test_step_passes_needs_p99_no_loss_and_the_rate_kept():
    from scenario import step_passes

    assert step_passes(_step(50, 99.0))
    assert not step_passes(_step(50, 101.0))
    assert not step_passes(_step(50, 10.0, lost=1))
    assert not step_passes(_step(50, 10.0, achieved=40))
    assert not step_passes(_step(50, None))


def test_best_step_is_the_highest_passing_rate():
    from scenario import best_step

    steps = [_step(25, 20.0), _step(50, 60.0), _step(100, 150.0)]
    assert best_step(steps)["rate_target"] == 50
    assert best_step([_step(25, 500.0)]) is None


def test_ladder_is_geometric_up_to_top():
    from scenario import ladder

    assert ladder(25, 2, 200) == [25, 50, 100, 200]
    assert ladder(10, 1.5, 30) == [10, 15, 22.5]


def test_server_metrics_compare_two_scrapes():
    import server_metrics

    text = (
        '# HELP x\nparley_gc_pause_seconds_total{generation="0"} 1.5\n'
        'parley_append_to_delivery_seconds_bucket{le="0.01"} 10.0\n'
        'parley_append_to_delivery_seconds_bucket{le="0.1"} 20.0\n'
        'parley_append_to_delivery_seconds_bucket{le="+Inf"} 20.0\n'
    )
    parsed = {(n, labels or ""): float(v) for n, labels, v in server_metrics._SAMPLE.findall(text)}
    before = {k: 0.0 for k in parsed} | {
        ("parley_gc_pause_seconds_total", '{generation="0"}'): 1.0
    }
    assert server_metrics.gc_pauses(before, parsed) == {"0": 0.5}
    name = "parley_append_to_delivery_seconds"
    assert server_metrics.histogram_quantile(before, parsed, name, 0.5) == 0.01
    assert server_metrics.histogram_quantile(before, parsed, name, 0.99) == 0.1
    assert server_metrics.histogram_quantile(parsed, parsed, name, 0.5) is None  # none new
