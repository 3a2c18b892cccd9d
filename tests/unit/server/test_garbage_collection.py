"""server/garbage_collection.py `tune`, in this process (its state is put back)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from server import garbage_collection


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored")
def test_tune_freezes_what_exists_and_sets_only_gen0() -> None:
    _gen0, gen1, gen2 = gc.get_threshold()
    kept = [object(), {"a": [1, 2]}]  # tracked now: frozen by tune
    frozen = garbage_collection.tune(12_345)
    assert frozen == gc.get_freeze_count()
    assert frozen > 1000
    assert gc.get_threshold() == (12_345, gen1, gen2)
    assert kept[1] == {"a": [1, 2]}


@pytest.mark.usefixtures("restored")
@pytest.mark.parametrize("threshold", [0, -1])
def test_a_threshold_below_one_is_refused_and_changes_nothing(threshold: int) -> None:
    before = gc.get_threshold()
    with pytest.raises(ValueError, match="gen0_threshold must be at least 1"):
        garbage_collection.tune(threshold)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
