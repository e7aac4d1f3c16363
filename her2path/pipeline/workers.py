"""How worker processes are set up: the pool is the parallelism, so each worker runs one thread.

Used by the tile pool of ``score_ihc``, the case pool of ``her2path batch`` and
Dask workers alike. Spawned (not forked) processes: a fork after OpenCV has
started its thread pool can deadlock.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def single_threaded_children():
    """Environment in which spawned workers start with one BLAS/OpenMP thread each.

    Start (or first submit to) a pool inside this block; the variables are
    restored on exit.
    """
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: "1" for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def limit_threads(torch_too: bool = True) -> None:
    """One OpenCV (and torch) thread in this process: call first thing in a worker."""
    import cv2

    cv2.setNumThreads(1)
    if torch_too:
        import torch

        torch.set_num_threads(1)
