"""The capacity model (bench/capacity.py) and the README's table (bench/headline.py) are
arithmetic on a run's JSON: the figures they print follow from the measured costs, and
their rewrite touches only the part between their markers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import capacity
import headline
from test_bench_report import fake_results


def _with_durable(results: dict) -> dict:
    results["phases"]["durable"] = {
        "sqlite-w1": {"committed_per_s": 4000.0, "server_cpu_us_per_message": 250.0},
        "postgres-w1": {"committed_per_s": 2500.0, "server_cpu_us_per_message": 400.0,
                        "postgres_cpu_us_per_message": 200.0,
                        "redis_cpu_us_per_message": 10.0, "redis_commands_per_message": 1.0},
        "postgres-w2": {"committed_per_s": 2400.0, "server_cpu_us_per_message": 420.0,
                        "postgres_cpu_us_per_message": 210.0,
                        "redis_cpu_us_per_message": 12.0, "redis_commands_per_message": 1.0},
    }  # fmt: skip
    idle = results["phases"]["idle"]["runs"]["parley"]
    idle.update(rss_per_conn_kib=10.0, idle_cpu_us_per_conn_s=2.0, alive_after_hold=3000)
    return results


def test_the_costs_are_read_from_the_run():
    c = capacity.costs(_with_durable(fake_results()))
    assert c["delivery_batched_us"] == pytest.approx(6.0)  # 0.006 s per 1000
    sc = c["scenario"]
    # the best step: 50 msgs/s at half a core, 100 room deliveries + 100 inbox frames each
    assert sc["us_per_msg"] == pytest.approx(0.5 * 1e6 / 50)
    assert sc["events_per_msg"] == pytest.approx(200)
    assert sc["events_per_core_s"] == pytest.approx(20_000)


def test_redis_pays_once_more_per_subscribed_worker():
    c = capacity.costs(_with_durable(fake_results()))
    assert capacity._redis_per_msg(c, 1) == pytest.approx(10.0)
    assert capacity._redis_per_msg(c, 8) == pytest.approx(10.0 + 7 * 2.0)


def test_one_core_carries_what_its_cpu_allows():
    a = capacity.Assumptions()
    text = capacity.model(_with_durable(fake_results()), a)
    # per user: 2 sockets x 2 us/s idle + 6/3600 msgs/s x 10,000 us = 20.67 us/s
    users = round(a.utilisation * 1e6 / (2 * 2.0 + 6 / 3600 * 10_000))
    assert f"| one Parley core | {users:,} active users" in text
    assert f"{round(0.7 * 1e6 / 200):,} durable msgs/s" in text  # one PostgreSQL core
    # 10M users: 16,667 msgs/s x (10 + 2 us x (processes - 1)) is past one Redis thread
    last = text.strip().splitlines()[-1]
    assert last.startswith("| 10,000,000 | 16,667 |") and "shard pub/sub by room" in last


def test_a_run_without_the_scenario_says_what_is_missing():
    results = fake_results()
    del results["phases"]["scenario"]
    assert "(needs the scenario and durable PostgreSQL phases)" in capacity.model(results)


def test_the_headline_table_gives_the_ratios_against_the_peer():
    text = headline.table(_with_durable(fake_results()))
    fan = next(line for line in text.splitlines() if line.startswith("| fan-out"))
    assert "| 150,000 |" in fan and "75x" in fan  # 150,000 / 2,000
    assert ".png" not in text  # no charts in this run
    assert "Daphne kept no rate" in text
    assert "missed in this run" in text


@pytest.mark.parametrize("module", [capacity, headline])
def test_a_rewrite_keeps_everything_outside_its_markers(module, tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{module.START}\nold\n{module.END}\nafter\n")
    module.write("new $1 \\g<0> table", doc)  # no regex escapes are read in the text
    assert doc.read_text() == f"before\n{module.START}\nnew $1 \\g<0> table\n{module.END}\nafter\n"
    doc.write_text("no markers")
    with pytest.raises(SystemExit):
        module.write("x", doc)
