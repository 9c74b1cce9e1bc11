"""Worker processes for the CPU work beside the main process: scoring (`vosbench eval`) and the
per-video outputs of the evaluation loops (CRF, labels, scores, PNGs; `vosbench.outputs`)."""

import multiprocessing
import os

# modules the fork server imports once, so that workers start without importing them
PRELOAD = ["vosbench.metrics.folders", "vosbench.metrics.datasets", "vosbench.outputs"]


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers start from a fork server, not as forks of this process: a fork copies only the
    forking thread, so a child of a process that runs threads (OpenCV's pool, a training loop,
    torch's OpenMP pool) can wait forever on a lock one of them held (seen with OpenCV). The
    server is started by a fresh interpreter that preloads `PRELOAD`; torch is not among them.
    It imports the caller's main script as multiprocessing's spawn does: a script that starts
    workers needs the `if __name__ == "__main__":` guard."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def init_worker(niceness: int = 0) -> None:
    """Each worker computes on one thread: the parallelism comes from the processes. A positive
    `niceness` lowers its scheduling priority, for workers that run beside a main process whose
    own work (the model) should not wait for them."""
    import cv2

    cv2.setNumThreads(1)
    if niceness:
        os.nice(niceness)
