"""Spreading independent jobs over worker processes, and fixing torch's thread count."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from tqdm.auto import tqdm


def _single_thread_worker():
    import torch

    torch.set_num_threads(1)


def run_jobs(function, jobs, desc: str, parallel: bool = True, progress: bool = True) -> list:
    """`function(*job)` for every job, with a progress bar; returns the results in job order.

    With `parallel`, two worker processes with one torch thread each: on this 2-core CPU two
    single-thread workers beat one two-thread process, and a busy machine hurts a two-thread
    process far more. Jobs must carry everything they need (the profile's Settings object, not
    its name), so that overrides reach the workers."""
    jobs = list(jobs)
    results = []
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress)
    if parallel and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), initializer=_single_thread_worker) as pool:
            for result in pool.map(function, *zip(*jobs)):
                results.append(result)
                bar.update()
    else:
        for job in jobs:
            results.append(function(*job))
            bar.update()
    bar.close()
    return results


@contextmanager
def torch_threads(n: int | None):
    """Run a block with n torch threads (None or 0: leave as is), then restore."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
