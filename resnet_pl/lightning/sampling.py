"""A training loader that resumes mid-epoch exactly where a killed run stopped.

PyTorch's shuffling ``DataLoader`` draws each epoch's order from the global generator when the
epoch starts, and keeps no record of how far it got. A run resumed from a mid-epoch checkpoint
therefore sees a new order and replays or skips samples. Here the order of epoch ``e`` is a pure
function of ``(seed, e)``, and the loader's ``state_dict`` (which Lightning stores in every
checkpoint for loaders that have one) records the epoch and the batches already delivered; on
resume the sampler starts after them, without reading the skipped samples. Under DDP each rank
iterates its own share of the same order, and the saved position holds for every rank.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)


class EpochShuffleSampler(DistributedSampler[int]):
    """This rank's share of a random permutation of ``range(n)`` per epoch, a function of
    ``(seed, epoch)`` only.

    With ``num_replicas`` ranks (DDP) the permutation is padded by wrapping around to a
    multiple of ``num_replicas`` (as ``DistributedSampler`` does) and rank ``r`` takes every
    ``num_replicas``-th index from position ``r``. After each rank has drawn ``k`` indices, the
    ranks together have drawn exactly the first ``k * num_replicas`` of the padded permutation,
    so one number describes everyone's position, whatever the rank count.

    It is a ``DistributedSampler`` so that Lightning keeps it under DDP instead of swapping in
    its own (which restarts its epoch on resume). Lightning calls :meth:`set_epoch` before each
    epoch. :meth:`resume_at` makes the next iteration of ``epoch`` start at position ``start``
    of this rank's share (the permutation is the same, the first ``start`` indices are left out).
    """

    def __init__(self, n: int, seed: int = 0, *, num_replicas: int = 1, rank: int = 0) -> None:
        indices: Any = range(n)  # DistributedSampler only needs the length
        super().__init__(indices, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.n = n
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.start = 0  # a resume position belongs to the epoch it was recorded in
        self.epoch = epoch

    def resume_at(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def permutation(self, epoch: int) -> list[int]:
        """The whole (unpadded) order of ``epoch``, the same on every rank."""
        # A dedicated generator: the order never depends on (or consumes) the global RNG.
        mixed = (self.seed * 0x9E37_79B9_7F4A_7C15 + epoch) % (1 << 63)
        g = torch.Generator().manual_seed(mixed)
        return torch.randperm(self.n, generator=g).tolist()

    def shard(self, epoch: int) -> list[int]:
        """This rank's indices of ``epoch``, in order (``len(self)`` of them)."""
        order = self.permutation(epoch)
        if self.num_replicas == 1:
            return order
        # Wrap around to a multiple of the rank count: every rank gets len(self) indices.
        padded = (order * math.ceil(self.total_size / max(len(order), 1)))[: self.total_size]
        return padded[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(self.shard(self.epoch)[start:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableDataLoader(DataLoader[Any]):
    """A shuffling training loader whose position can be saved and restored, on one process
    or on each DDP rank.

    ``state_dict()`` is ``{"epoch", "batches", "world_size"}``: the epoch being iterated, how
    many batches this rank's iterator has yielded in it, and the number of ranks. Lightning's
    training loop fetches without look-ahead when the loader has a length, so at a checkpoint
    taken after step *k* of an epoch ``batches`` is *k*. DDP ranks step in lockstep (every rank
    has the same number of batches per epoch, and each optimizer step is a collective), so at
    any checkpoint every rank's position is the same ``batches`` and rank 0's state, which
    Lightning saves, is each rank's state; each rank's indices are a function of (seed, epoch,
    rank, world size). Resumed with a different number of ranks, each rank skips its share of
    the samples already drawn by all ranks (no sample is repeated or left out, up to
    ``world_size - 1`` at the boundary), but batches are composed differently, so that resume is
    not bit-exact. Worker processes draw their seeds from the loader's own generator (seeded with
    ``seed``), never from the global one, so building a loader does not shift the global random
    stream.
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        **kwargs: Any,
    ) -> None:
        sampler = EpochShuffleSampler(
            len(dataset),  # type: ignore[arg-type]
            seed,
            num_replicas=num_replicas,
            rank=rank,
        )
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
        sampler = self.epoch_sampler
        return {
            "epoch": sampler.epoch,
            "batches": self._yielded,
            "world_size": sampler.num_replicas,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        assert self.batch_size is not None
        sampler = self.epoch_sampler
        batches = int(state_dict["batches"])
        saved_ranks = int(state_dict.get("world_size", 1))  # checkpoints from before DDP support
        start = batches * self.batch_size
        if saved_ranks != sampler.num_replicas:
            # The ranks had drawn the first `start * saved_ranks` indices of the epoch's order;
            # each rank now skips its share of those.
            start = start * saved_ranks // sampler.num_replicas
            log.warning(
                "resuming a %d-process run on %d processes: the sample order continues where it "
                "stopped, but batches are composed differently, so the result is not bit-identical "
                "to an uninterrupted run",
                saved_ranks,
                sampler.num_replicas,
            )
        sampler.resume_at(int(state_dict["epoch"]), start)
        self._yielded = start // self.batch_size
