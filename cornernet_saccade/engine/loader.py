"""The training data stream: which sample each process sees at each iteration, as a pure function.

The stream is an endless sequence of dataset indices: epoch ``e`` is the permutation
``numpy.random.default_rng([seed, e]).permutation(len(dataset))``. Iteration ``i`` (0-based) takes
positions ``[i * B, (i + 1) * B)`` (``B`` the global batch). Its micro-batch ``a`` for rank ``r``
(of ``W`` processes, ``b = B / (W * grad_accum)`` images each) starts at ``i * B + (a * W + r) * b``.
Each position becomes a key ``(epoch, index)``; the sample of a key is built with the per-item RNG
of :class:`~cornernet_saccade.data.samples.TrainingSampleDataset` (from ``(seed, epoch, index)``).
So the data of any iteration depends on nothing but the seed and the iteration: resuming, the
number of DataLoader workers and the process count do not change what a global batch holds.

An image that cannot be read is replaced by the next index of the dataset (then the one after, up
to :data:`MAX_REPLACEMENTS` times); the error messages travel with the batch so that the main
process can count and log them.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cornernet_saccade.data.samples import TrainingSampleDataset, collate
from cornernet_saccade.errors import CornerNetSaccadeError, TrainingError

#: How many following indices are tried in place of an unreadable image before giving up.
MAX_REPLACEMENTS = 16

SampleKey = tuple[int, int]


class IndexStream:
    """Position in the endless stream of shuffled epochs -> ``(epoch, index)``."""

    def __init__(self, seed: int, size: int) -> None:
        if size < 1:
            raise ValueError("the dataset is empty")
        self.seed = seed
        self.size = size
        self._epoch = -1
        self._order = np.empty(0, np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """Order of the dataset indices in ``epoch`` (cached: the stream is read epoch by epoch)."""
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._epoch = epoch
        return self._order

    def keys(self, start: int, count: int) -> list[SampleKey]:
        """Keys of positions ``start .. start + count - 1``."""
        return [(p // self.size, int(self.permutation(p // self.size)[p % self.size])) for p in range(start, start + count)]


@dataclass(frozen=True)
class StreamLayout:
    """How a global batch of ``batch_size`` is split over ``world_size`` processes and
    ``grad_accum`` micro-batches of ``micro_batch`` images each."""

    batch_size: int
    grad_accum: int
    world_size: int
    rank: int

    @property
    def micro_batch(self) -> int:
        return self.batch_size // (self.world_size * self.grad_accum)

    def micro_batch_start(self, iteration: int, step: int) -> int:
        """Stream position of this rank's micro-batch ``step`` of ``iteration`` (0-based)."""
        return iteration * self.batch_size + (step * self.world_size + self.rank) * self.micro_batch


class StreamBatchSampler(Sampler[list[SampleKey]]):
    """This process's micro-batches (lists of keys) for iterations ``start .. stop - 1``, in order."""

    def __init__(self, stream: IndexStream, layout: StreamLayout, start: int, stop: int) -> None:
        self.stream = stream
        self.layout = layout
        self.start = start
        self.stop = stop

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for iteration in range(self.start, self.stop):
            for step in range(self.layout.grad_accum):
                yield self.stream.keys(self.layout.micro_batch_start(iteration, step), self.layout.micro_batch)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.layout.grad_accum


class StreamDataset(Dataset):
    """Samples by key ``(epoch, index)``: ``(sample, messages of the unreadable images replaced)``."""

    def __init__(self, samples: TrainingSampleDataset) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> tuple[dict[str, np.ndarray], list[str]]:
        epoch, index = key
        failures: list[str] = []
        self.samples.set_epoch(epoch)
        for attempt in range(MAX_REPLACEMENTS + 1):
            try:
                return self.samples[(index + attempt) % len(self.samples)], failures
            except CornerNetSaccadeError as exc:
                failures.append(str(exc))
        raise TrainingError(
            f"{self.samples.dataset.source}: {len(failures)} unreadable images in a row from index {index}; "
            f"last error: {failures[-1]} (run check-data on the dataset)"
        )


def collate_with_failures(items: Sequence[tuple[dict[str, np.ndarray], list[str]]]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Batch the samples (:func:`~cornernet_saccade.data.samples.collate`) and gather the failures."""
    return collate([sample for sample, _ in items]), [message for _, failures in items for message in failures]


def stream_loader(
    samples: TrainingSampleDataset, layout: StreamLayout, start: int, stop: int, workers: int, pin_memory: bool
) -> DataLoader:
    """DataLoader of this rank's micro-batches for iterations ``start .. stop - 1``.

    Its own generator keeps the global torch RNG untouched by the loader's worker seeding.
    """
    stream = IndexStream(samples.seed, len(samples))
    return DataLoader(
        StreamDataset(samples),
        batch_sampler=StreamBatchSampler(stream, layout, start, stop),
        num_workers=workers,
        collate_fn=collate_with_failures,
        pin_memory=pin_memory,
        generator=torch.Generator(),
    )
