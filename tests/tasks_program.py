"""An asyncio program whose tasks are known (tests/test_asyncio_tasks.py traces it).

Every traced function's first statement logs (the running task's name, the
function): the oracle the trace's task notes are checked against.  Nothing
here depends on time: every wait ends on an event the program sets itself, or
on a timeout of 0 (which expires at the loop's next turn, whatever the load).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

#: (the running task or None, function), in the order the functions started.
#: The task itself: an eager task (3.12+) runs its first step before
#: create_task names it, so its name is read at the end.
LOG: list[tuple[asyncio.Task[object] | None, str]] = []


def _task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: a worker thread
        return None


def log(fn: str) -> None:
    LOG.append((_task(), fn))


def helper(x: int) -> int:
    log("helper")
    return x + 1


async def leaf(x: int) -> int:
    log("leaf")
    await asyncio.sleep(0)
    return helper(x)


async def child(x: int) -> int:
    log("child")
    v = await leaf(x)
    await asyncio.sleep(0)
    return helper(v)


async def parent() -> int:
    log("parent")
    async with asyncio.TaskGroup() as tg:
        a = tg.create_task(child(1), name="child-a")
        b = tg.create_task(child(2), name="child-b")
    return a.result() + b.result()


async def boom() -> None:
    log("boom")
    await asyncio.sleep(0)
    raise ValueError("boom")


def cleanup() -> None:
    log("cleanup")


async def sleeper(started: asyncio.Event) -> None:
    log("sleeper")
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        cleanup()


async def numbers() -> AsyncIterator[int]:
    log("numbers")
    for i in range(3):
        await asyncio.sleep(0)
        yield helper(i)


async def consumer() -> int:
    log("consumer")
    total = 0
    async for n in numbers():
        total += n
    return total


def blocking(x: int) -> int:
    log("blocking")
    return helper(x)


async def gathered(x: int) -> int:
    log("gathered")
    await asyncio.sleep(0)
    return helper(x)


async def never() -> None:
    log("never")
    await asyncio.Event().wait()


async def eager_quick() -> int:
    log("eager_quick")
    return helper(10)


async def eager_slow() -> int:
    log("eager_slow")
    await asyncio.sleep(0)
    return helper(20)


async def main() -> list[object]:
    log("main")
    out: list[object] = [await asyncio.create_task(parent(), name="parent")]
    bad = asyncio.create_task(boom(), name="boom")
    try:
        await bad
    except ValueError:
        out.append("boom")
    started = asyncio.Event()
    sl = asyncio.create_task(sleeper(started), name="sleeper")
    await started.wait()
    sl.cancel()
    try:
        await sl
    except asyncio.CancelledError:
        out.append("cancelled")
    out.append(await asyncio.create_task(consumer(), name="consumer"))
    out.append(await asyncio.to_thread(blocking, 5))
    out.append(await asyncio.gather(gathered(1), gathered(2)))
    out.append(await asyncio.wait_for(gathered(3), timeout=100))
    try:
        async with asyncio.timeout(0):
            await never()
    except TimeoutError:
        out.append("timeout")
    if sys.version_info >= (3, 12):
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        quick = asyncio.create_task(eager_quick(), name="eager-quick")
        slow = asyncio.create_task(eager_slow(), name="eager-slow")
        out.append((quick.done(), await quick, await slow))
        loop.set_task_factory(None)
    return out


def run() -> list[object]:
    LOG.clear()
    return asyncio.run(main())
