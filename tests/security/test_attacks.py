"""The attack corpus in CI (reduced rounds; tools/attack_corpus.py runs many more): every
attack detected, every non-tail attack located to its exact record, no false positives."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.attacks import ATTACKS, build_scenario, false_positive_checks, run_attack


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> list:  # noqa: ANN401
    return [build_scenario(tmp_path_factory.mktemp(f"scenario{seed}"), random.Random(seed)) for seed in (1, 2)]


def test_at_least_twenty_kinds() -> None:
    assert len(ATTACKS) >= 20


@pytest.mark.parametrize("kind", sorted(ATTACKS))
def test_attack_is_detected_and_located(kind: str, scenarios: list, tmp_path: Path) -> None:  # noqa: ANN401
    for index, scenario in enumerate(scenarios):
        for round_ in range(2):
            result = run_attack(kind, scenario, tmp_path, random.Random(f"{kind}/{index}/{round_}"))
            assert result.detected, f"{kind} missed (exit {result.exit_code}): {result.first}"
            assert result.located is not False, f"{kind} found at the wrong place: {result.first}"


def test_no_false_positives_on_clean_and_torn_logs(scenarios: list, tmp_path: Path) -> None:  # noqa: ANN401
    for seed, scenario in enumerate(scenarios):
        for case, code in false_positive_checks(scenario, tmp_path, random.Random(seed)):
            assert code == 0, f"{case}: exit {code}"
