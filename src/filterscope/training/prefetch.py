"""Preparing the next training batches in a background thread while the model trains.

On a GPU a DnCNN step takes a few milliseconds, about as long as cutting 128 patches
and drawing their noise in Python, so the batches are made ahead, in order, by one
thread. It is the only user of the data generators, so the stream of batches is the
same as without prefetching; each batch carries the generator states right after it
was made, which is what a checkpoint must store for an exact resume.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import torch

Batch = tuple[torch.Tensor, ...]


class BatchPrefetcher:
    """Iterator over ``(batch, states)`` made ahead by a background thread.

    Parameters
    ----------
    make_batch : callable
        ``make_batch() -> tuple of tensors``, drawing from ``generators``.
    generators : dict of str to torch.Generator
        The generators ``make_batch`` draws from; their states after each batch are
        returned with it (``{name: state tensor}``).
    depth : int, keyword-only
        Batches made ahead (0: made on demand in the calling thread).
    pin_memory : bool, keyword-only
        Put batches in page-locked memory (for fast copies to a GPU).
    """

    def __init__(
        self,
        make_batch: Callable[[], Batch],
        generators: dict[str, torch.Generator],
        *,
        depth: int = 2,
        pin_memory: bool = False,
    ):
        self._make = make_batch
        self._generators = generators
        self._pin = pin_memory
        self._depth = depth
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._thread = threading.Thread(target=self._produce, daemon=True)
            self._thread.start()

    def _one(self) -> tuple[Batch, dict[str, torch.Tensor]]:
        batch = tuple(self._make())
        if self._pin:
            batch = tuple(tensor.pin_memory() for tensor in batch)
        states = {name: g.get_state() for name, g in self._generators.items()}
        return batch, states

    def _produce(self) -> None:
        # Batches are small; with several intra-op threads here, this thread's OpenMP
        # team competes with the training step's for the same cores (25% slower steps
        # at 2 threads on 2 cores, benchmarks/training.py). Threads that already ran a
        # torch op keep their count; the process default for new threads is put back.
        default_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._fill_queue()
        finally:
            torch.set_num_threads(default_threads)

    def _fill_queue(self) -> None:
        while not self._stop.is_set():
            try:
                item: Any = self._one()
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def next(self) -> tuple[Batch, dict[str, torch.Tensor]]:
        """The next batch and the generator states right after it."""
        if self._thread is None:
            return self._one()
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (batches made ahead are dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


__all__ = ["BatchPrefetcher"]
