"""A training loader that resumes mid-epoch exactly where a killed run stopped.

PyTorch's shuffling ``DataLoader`` draws each epoch's order from the global generator when the
epoch starts, and keeps no record of how far it got. A run resumed from a mid-epoch checkpoint
therefore sees a new order and replays or skips samples. Here the order of epoch ``e`` is a pure
function of ``(seed, e)``, and the loader's ``state_dict`` (which Lightning stores in every
checkpoint for loaders that have one) records the epoch and the batches already delivered; on
resume the sampler starts after them, without reading the skipped samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(n)`` per epoch, a function of ``(seed, epoch)`` only.

    Lightning calls :meth:`set_epoch` before each epoch. :meth:`resume_at` makes the next
    iteration of ``epoch`` start at position ``start`` (the permutation is the same, the first
    ``start`` indices are left out).
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a resume position belongs to the epoch it was recorded in
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def permutation(self, epoch: int) -> list[int]:
        # A dedicated generator: the order never depends on (or consumes) the global RNG.
        mixed = (self.seed * 0x9E37_79B9_7F4A_7C15 + epoch) % (1 << 63)
        g = torch.Generator().manual_seed(mixed)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.permutation(self.epoch)[start:])

    def __len__(self) -> int:
        return self.n


class ResumableDataLoader(DataLoader[Any]):
    """A shuffling training loader whose position can be saved and restored.

    ``state_dict()`` is ``{"epoch", "batches"}``: the epoch being iterated and how many batches
    this epoch's iterator has yielded. Lightning's training loop fetches without look-ahead when
    the loader has a length, so at a checkpoint taken after step *k* of an epoch this is *k*.
    Worker processes draw their seeds from the loader's own generator (seeded with ``seed``),
    never from the global one, so building a loader does not shift the global random stream.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> None:
        sampler = EpochShuffleSampler(len(dataset), seed)  # type: ignore[arg-type]
        super().__init__(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(seed),
            **kwargs,
        )
        self._yielded = 0

    @property
    def epoch_sampler(self) -> EpochShuffleSampler:
        sampler = self.sampler
        assert isinstance(sampler, EpochShuffleSampler)
        return sampler

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # A generator: nothing runs until the first batch is requested, which Lightning does
        # after it has called set_epoch (and, on resume, load_state_dict).
        assert self.batch_size is not None
        self._yielded = self.epoch_sampler.start // self.batch_size
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch_sampler.epoch, "batches": self._yielded}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        assert self.batch_size is not None
        batches = int(state_dict["batches"])
        self.epoch_sampler.resume_at(int(state_dict["epoch"]), batches * self.batch_size)
        self._yielded = batches
