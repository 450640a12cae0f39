"""The server's generation thread: requests with identical sampling settings are decoded as one
batch (a client with bounded concurrency gets batched throughput), and a request whose client
went away is dropped between decoding batches, so it never holds the model for the next one."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from w2s.generation.sampling import SamplingConfig, WorkItem


class Cancelled(RuntimeError):
    """The request was cancelled (its client went away) before its completions were done."""


@dataclass
class Job:
    request_id: str
    items: list[WorkItem]
    sampling: SamplingConfig
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()


class Batcher:
    """One generation thread over a backend (`run(items, sampling)` yielding batches of results)."""

    def __init__(self, backend, gather_s: float = 0.005):
        self.backend, self.gather_s = backend, gather_s
        self.jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._loop, daemon=True, name="w2s-serve-batcher").start()

    def submit(self, items: list[WorkItem], sampling: SamplingConfig) -> Job:
        job = Job(items[0].id.split(":")[0] if items else "", items, sampling)
        self.jobs.put(job)
        return job

    def waiting(self) -> int:
        return self.jobs.qsize()

    def _loop(self) -> None:
        while True:
            group = [self.jobs.get()]
            deadline = time.monotonic() + self.gather_s
            others = []
            while (left := deadline - time.monotonic()) > 0:
                try:
                    job = self.jobs.get(timeout=left)
                except queue.Empty:
                    break
                (group if job.sampling == group[0].sampling else others).append(job)
            for job in others:  # different settings: next round
                self.jobs.put(job)
            self._run([job for job in group if not self._drop_if_cancelled(job)])

    @staticmethod
    def _drop_if_cancelled(job: Job) -> bool:
        if job.cancelled.is_set():
            job.future.set_exception(Cancelled(job.request_id))
            return True
        return False

    def _run(self, group: list[Job]) -> None:
        """Decode the group's items (one job after the other, so a cancelled job's remaining
        items are never decoded); each job's future gets its results in item order."""
        if not group:
            return
        results: dict = {}
        try:
            for batch in self.backend.run([it for job in group for it in job.items], group[0].sampling):
                for r in batch:
                    results[(r["id"], r["sample_index"])] = r
                self._settle(group, results)
                if all(job.future.done() or job.cancelled.is_set() for job in group):
                    break  # every waiting client is served or gone: stop decoding
        except Exception as e:  # noqa: BLE001 - reported to every waiting request
            for job in group:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        for job in group:
            if not job.future.done():
                job.future.set_exception(Cancelled(job.request_id))

    @staticmethod
    def _settle(group: list[Job], results: dict) -> None:
        for job in group:
            if job.future.done():
                continue
            if job.cancelled.is_set():
                job.future.set_exception(Cancelled(job.request_id))
            elif all((it.id, it.sample_index) in results for it in job.items):
                job.future.set_result([results[(it.id, it.sample_index)] for it in job.items])
