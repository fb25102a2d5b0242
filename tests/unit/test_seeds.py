"""tests/seeds.py: a missing seed document skips its tests with the path as the reason, or fails them
when METERLINE_REQUIRE_SEEDS=1 (CI); a present one is simply returned."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.seeds import REQUIRE_ENV, needs_seed, seed


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "present.md").write_text("# seed\n")
    monkeypatch.setenv("METERLINE_SHARED", str(tmp_path))
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    return tmp_path


def test_a_present_seed_is_returned_and_not_skipped(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert seed("present.md") == shared / "seeds" / "present.md"
    assert needs_seed("present.md").args == (False,)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    assert seed("present.md") == shared / "seeds" / "present.md"


def test_a_missing_seed_skips_with_its_path_as_the_reason(shared: Path) -> None:
    mark = needs_seed("absent.md")
    assert mark.args == (True,) and str(shared / "seeds" / "absent.md") in mark.kwargs["reason"]
    with pytest.raises(pytest.skip.Exception, match="absent.md is missing"):
        seed("absent.md")


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_required_seeds_fail_instead_of_skipping(shared: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    assert needs_seed("absent.md").args == (False,)  # no skip at collection: the test runs, and seed() fails it
    with pytest.raises(pytest.fail.Exception, match=f"absent.md is missing.*{REQUIRE_ENV}=1 requires it"):
        seed("absent.md")


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_off_values_keep_the_skip(shared: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.skip.Exception):
        seed("absent.md")
