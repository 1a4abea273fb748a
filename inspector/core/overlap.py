"""Overlap the CPU work around the model call with the model call itself.

ONNX Runtime's convolutions leave gaps on a 2-core CPU (serial operators between the parallel
ones, threads waking up); OpenCV's decoding, alignment, smoothing and PNG encoding release the
GIL and fill them. Measured on the 2-core AVX2 machine (docs/results.md): 4-13% more boards a
second than doing the stages one after the other.

- `overlapped`: the model on the caller's thread; loading (decode, preparation) of the next batch
  and finishing (scoring) of the last one on one worker thread (`inspector inspect`, `bench`).
- `computed_ahead`: the model on a worker; the caller handles the last part on its own thread
  (the folder runner, whose store lives there).

One worker thread each, so at most one batch is loaded ahead and one is being finished: memory
stays bounded, and results come out in input order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")
Ran = TypeVar("Ran")
Done = TypeVar("Done")


def overlapped(items: Iterable[Item], load: Callable[[Item], Loaded], run: Callable[[Loaded], Ran],
               finish: Callable[[Ran], Done]) -> Iterator[Done]:
    """finish(run(load(item))) for each item, in order; `run` on the caller's thread, the others on a worker.

    An exception from any stage reaches the caller at that item, after every earlier item has been
    delivered and once the worker has ended what it had started, so nothing runs on behind an error.
    """
    queue = iter(items)
    try:
        current = next(queue)
    except StopIteration:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="overlap") as worker:
        loading: Future[Loaded] = worker.submit(load, current)
        finishing: Future[Done] | None = None
        more = True
        while more:
            try:
                loaded = loading.result()
                try:
                    loading = worker.submit(load, next(queue))
                except StopIteration:
                    more = False
                ran = run(loaded)
            except BaseException:
                if finishing is not None:  # the item before the failing one is still delivered
                    yield finishing.result()
                raise
            if finishing is not None:
                yield finishing.result()
            finishing = worker.submit(finish, ran)
        assert finishing is not None
        yield finishing.result()


def computed_ahead(items: Sequence[Item], compute: Callable[[Item], Ran]) -> Iterator[tuple[Item, Future[Ran]]]:
    """(item, future of compute(item)) in order, with compute(next item) already running on a worker
    while the caller handles this one.

    For a caller that must do its own part on its own thread (the folder runner stores and moves
    each board where its store session lives) while the model runs on the next boards. Computations
    run one at a time, in order; leaving the loop early waits for the one in flight.
    """
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ahead") as worker:
        following = worker.submit(compute, items[0])
        for index, item in enumerate(items):
            current = following
            if index + 1 < len(items):
                following = worker.submit(compute, items[index + 1])  # starts as soon as `current` is done
            yield item, current
