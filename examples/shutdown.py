"""Graceful shutdown with a grace period, and hard cancellation of the whole run."""

import trio

import sluicegate as sg


def tracker(n: int) -> sg.DagCompletionTracker:
    tr = sg.DagCompletionTracker()
    for i in range(n):
        tr.add(i)
    return tr


async def short(task: sg.SchedulableTask) -> None:
    await trio.sleep(0.02)


async def endless(task: sg.SchedulableTask) -> None:
    await trio.sleep(60)


async def main() -> None:
    # 1. shutdown(): stop admitting; running workers finish; queued ones never start.
    scheduler = sg.AsyncTaskScheduler(tracker(20), short, capacity=4)
    async with trio.open_nursery() as nursery:

        async def stop_soon() -> None:
            await trio.sleep(0.03)
            scheduler.shutdown()  # grace_period=None: wait for running workers

        nursery.start_soon(stop_soon)
        result = await scheduler.run()
    print("graceful:", result.shutdown_requested, result.counts)

    # 2. shutdown(grace_period=...): running workers are cancelled when the grace ends.
    scheduler = sg.AsyncTaskScheduler(tracker(20), endless, capacity=4)
    async with trio.open_nursery() as nursery:

        async def stop_with_grace() -> None:
            await trio.sleep(0.01)
            scheduler.shutdown(grace_period=0.05)

        nursery.start_soon(stop_with_grace)
        result = await scheduler.run()
    print(f"grace ended after {result.elapsed:.2f}s:", result.counts)

    # 3. Cancelling the surrounding scope: run() raises Cancelled (absorbed by move_on),
    #    there is no result, and every lease is still released.
    scheduler = sg.AsyncTaskScheduler(tracker(20), endless, capacity=4)
    with trio.move_on_after(0.05):
        await scheduler.run()
    view = scheduler.admission.view()
    print("cancelled:", view.acquired_total, "acquired /", view.released_total, "released")
    print("leases held after cancellation:", view.active_leases)

    # 4. shutdown() before run(): run() returns at once and no task starts.
    scheduler = sg.AsyncTaskScheduler(tracker(3), short)
    scheduler.shutdown()
    result = await scheduler.run()
    print("shut down before run:", result.shutdown_requested, result.counts)


trio.run(main)
