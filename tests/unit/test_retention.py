"""Retention planning (core/retention.py), sans IO: which sessions an enforcing run evicts, in
what order and why, and what protects a session."""

from __future__ import annotations

from securestore.config import MaintenancePolicy
from securestore.core.retention import DAY_MS, MaintenanceReport, SessionUsage, plan, protection

NOW = 1_800_000_000_000


def usage(name: str, days_old: float, size: int = 100, protected: str | None = None) -> SessionUsage:
    return SessionUsage(name, name, NOW - int(days_old * DAY_MS), size, protected)


def test_plan_prunes_old_sessions_oldest_first() -> None:
    policy = MaintenancePolicy(prune_after_days=30)
    found = plan([usage("a", 31), usage("b", 29), usage("c", 45), usage("d", 90, protected="pinned")], policy, NOW)
    assert [(e.key, e.reason) for e in found] == [("c", "prune"), ("a", "prune")]


def test_plan_count_cap_waits_for_the_slack_then_evicts_down_to_the_cap() -> None:
    policy = MaintenancePolicy(max_sessions_kept=10)  # slack max(25, 1) = 25
    young = [usage(f"s{i:02}", days_old=i / 100) for i in range(35)]
    assert plan(young, policy, NOW) == []  # 35 <= 10 + 25
    young.append(usage("s99", days_old=0.99))
    evicted = plan(young, policy, NOW)
    assert len(evicted) == 26 and {e.reason for e in evicted} == {"count"}
    assert evicted[0].key == "s99"  # oldest first


def test_plan_disk_budget_evicts_down_to_the_high_water_mark() -> None:
    policy = MaintenancePolicy(max_disk_bytes=1000, high_water=0.8)
    sessions = [usage(f"s{i}", days_old=10 - i, size=150) for i in range(8)]  # 1200 bytes
    evicted = plan(sessions, policy, NOW)
    assert [e.key for e in evicted] == ["s0", "s1", "s2"]  # 1200 -> 750 <= 800
    assert plan(sessions[:6], policy, NOW) == []  # 900 bytes: under budget, nothing to do


def test_plan_prune_cutoff_is_strict_and_counts_in_milliseconds() -> None:
    policy = MaintenancePolicy(prune_after_days=30)
    at_cutoff = SessionUsage("edge", "edge", NOW - 30 * DAY_MS, 10, None)
    one_ms_older = SessionUsage("older", "older", NOW - 30 * DAY_MS - 1, 10, None)
    assert [e.key for e in plan([at_cutoff, one_ms_older], policy, NOW)] == ["older"]


def test_plan_never_evicts_a_protected_session_under_any_rule() -> None:
    pinned = usage("pinned", 400, size=10_000, protected="matches protected pattern 'keep/*'")
    others = [usage(f"s{i:02}", days_old=i / 10, size=10) for i in range(30)]
    for rule, policy in {"prune": MaintenancePolicy(prune_after_days=0.001),
                         "count": MaintenancePolicy(max_sessions_kept=1),
                         "disk": MaintenancePolicy(max_disk_bytes=100, high_water=0.5)}.items():
        evicted = plan([pinned, *others], policy, NOW)
        assert evicted and {e.reason for e in evicted} == {rule}, rule
        assert "pinned" not in {e.key for e in evicted}, rule


def test_plan_applies_the_rules_in_order_and_names_each_reason() -> None:
    policy = MaintenancePolicy(prune_after_days=30, max_sessions_kept=1, max_disk_bytes=250, high_water=0.8)
    sessions = [usage("ancient", 90, size=10), *(usage(f"young{i:02}", days_old=i / 10, size=10) for i in range(27))]
    evicted = plan(sessions, policy, NOW)
    reasons = {e.key: e.reason for e in evicted}
    assert reasons["ancient"] == "prune"
    # 27 left > 1 + 25 slack: down to the cap, the oldest first; the disk rule has nothing left to do
    assert sorted(k for k, r in reasons.items() if r == "count") == [f"young{i:02}" for i in range(1, 27)]
    assert "young00" not in reasons
    assert [e.updated_ms for e in evicted] == sorted(e.updated_ms for e in evicted)  # oldest first overall


def test_plan_disk_rule_stops_as_soon_as_the_total_is_under_the_high_water_mark() -> None:
    policy = MaintenancePolicy(max_disk_bytes=1000, high_water=0.5)
    sessions = [usage("big-old", 9, size=600), usage("small-mid", 5, size=100), usage("new", 1, size=400)]
    # 1100 > 1000: evict oldest first until <= 500; 1100 - 600 = 500, so only the first one goes
    assert [(e.key, e.reason) for e in plan(sessions, policy, NOW)] == [("big-old", "disk")]


def test_protection_names_the_pattern_before_the_live_holder() -> None:
    policy = MaintenancePolicy(protected_keys=("keep/*", "pin-??"))
    assert protection("keep/a", policy, None) == "matches protected pattern 'keep/*'"
    assert protection("pin-42", policy, "pid 7") == "matches protected pattern 'pin-??'"
    assert protection("pin-420", policy, None) is None  # fnmatch, whole key: ? is one character
    assert protection("KEEP/a", policy, None) is None  # case-sensitive on every platform
    assert protection("free", policy, "pid 7 on host") == "held by a live writer (pid 7 on host)"


def test_report_json_spells_out_protected_sessions() -> None:
    why = "matches protected pattern 'keep/*'"
    report = MaintenanceReport("warn", NOW, 2, 300, 1, 100, protected=[("keep/a", why)])
    out = report.to_json()
    assert out["protected"] == [{"key": "keep/a", "why": why}]
    assert (out["mode"], out["sessions_before"], out["bytes_after"], out["evictions"]) == ("warn", 2, 100, [])
