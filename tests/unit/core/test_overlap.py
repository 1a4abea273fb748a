"""The overlap of decode / model / finish stages: order, threads, real concurrency and errors."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from inspector.core.overlap import computed_ahead, overlapped

WAIT_S = 10.0  # generous: only a broken overlap ever waits this long


def test_results_come_in_input_order_with_run_on_the_callers_thread() -> None:
    caller = threading.get_ident()
    threads: dict[str, set[int]] = {"load": set(), "run": set(), "finish": set()}

    def stage(name: str, step: int) -> Callable[[int], int]:
        def apply(value: int) -> int:
            threads[name].add(threading.get_ident())
            return value * 10 + step
        return apply

    out = list(overlapped(range(7), stage("load", 1), stage("run", 2), stage("finish", 3)))
    assert out == [((i * 10 + 1) * 10 + 2) * 10 + 3 for i in range(7)]
    assert threads["run"] == {caller}
    assert caller not in threads["load"] | threads["finish"]


def test_no_items_gives_no_results() -> None:
    assert list(overlapped([], lambda x: x, lambda x: x, lambda x: x)) == []


def test_the_next_load_and_the_last_finish_run_while_the_model_runs() -> None:
    loaded_second = threading.Event()
    finished_first = threading.Event()
    seen_during_run: list[tuple[int, bool]] = []

    def load(item: int) -> int:
        if item == 1:
            loaded_second.set()
        return item

    def run(item: int) -> int:
        if item == 0:  # the model call of board 0 waits for board 1 to be decoded beside it
            seen_during_run.append((0, loaded_second.wait(WAIT_S)))
        if item == 1:  # and that of board 1 for board 0 to be finished beside it
            seen_during_run.append((1, finished_first.wait(WAIT_S)))
        return item

    def finish(item: int) -> int:
        if item == 0:
            finished_first.set()
        return item

    assert list(overlapped(range(3), load, run, finish)) == [0, 1, 2]
    assert seen_during_run == [(0, True), (1, True)]


@pytest.mark.parametrize("failing", ["load", "run", "finish"])
def test_an_error_in_any_stage_reaches_the_caller_at_that_item(failing: str) -> None:
    def stage(name: str) -> Callable[[int], int]:
        def apply(value: int) -> int:
            if name == failing and value == 2:
                raise ValueError(f"{name} broke on 2")
            return value
        return apply

    got: list[int] = []
    with pytest.raises(ValueError, match=f"{failing} broke on 2"):
        for value in overlapped(range(5), stage("load"), stage("run"), stage("finish")):
            got.append(value)
    assert got == [0, 1]


def test_computed_ahead_runs_the_next_computation_while_the_caller_handles_this_one() -> None:
    caller = threading.get_ident()
    second_started = threading.Event()
    computed_on: set[int] = set()
    handled: list[tuple[int, int, bool]] = []

    def compute(item: int) -> int:
        computed_on.add(threading.get_ident())
        if item == 1:
            second_started.set()
        return item * item

    for item, future in computed_ahead([0, 1, 2], compute):
        result = future.result()
        # while item 0 is handled here, item 1 is computed on the worker
        handled.append((item, result, second_started.wait(WAIT_S) if item == 0 else True))
    assert handled == [(0, 0, True), (1, 1, True), (2, 4, True)]
    assert caller not in computed_on


def test_computed_ahead_gives_each_error_with_its_item_and_goes_on() -> None:
    def compute(item: int) -> int:
        if item == 1:
            raise ValueError("model refused 1")
        return item

    outcomes: list[int | str] = []
    for _item, future in computed_ahead([0, 1, 2], compute):
        try:
            outcomes.append(future.result())
        except ValueError as error:
            outcomes.append(str(error))
    assert outcomes == [0, "model refused 1", 2]
    assert list(computed_ahead([], compute)) == []
