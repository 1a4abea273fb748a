"""The bench's alternated timing: both sides of a comparison measured in the same stretches of time."""

from __future__ import annotations

from inspector.quality.bench import alternated_times


def test_alternated_blocks_turn_their_order_each_round_and_wake_each_side_first() -> None:
    calls: list[str] = []
    times = alternated_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, block=2)
    # one untimed call, then the timed block, per side; the side that went second goes first next round
    assert calls == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert [len(block) for block in times["a"]] == [2, 2, 2] and len(times["b"]) == 3
    assert all(ms >= 0 for blocks in times.values() for block in blocks for ms in block)


def test_a_slower_call_is_slower_in_every_round() -> None:
    import time

    times = alternated_times({"slow": lambda: time.sleep(0.004), "fast": lambda: None}, rounds=2, block=2)
    for slow, fast in zip(times["slow"], times["fast"]):
        assert min(slow) > max(fast)
