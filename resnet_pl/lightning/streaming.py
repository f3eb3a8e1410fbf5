"""``StreamingDataModule``: training data streamed from LitData shards, on one GPU or many nodes.

The third data path beside in-memory tensors and image folders. The shards are written once by
``resnet-pl data optimize SRC OUT`` (:func:`resnet_pl.data.shards.optimize_dataset`); ``OUT``
may then live in a local folder or in a bucket (``s3://``, ``gs://``). On the command line::

    resnet-pl fit --data.dataset streaming --data.data_dir OUT ...

What it guarantees:

- **One decoder, the folder's transforms.** Images are decoded by
  :func:`resnet_pl.data.decode.load_image` and transformed as the folder path does
  (:func:`~resnet_pl.data.transforms.train_geometry` in training,
  :func:`~resnet_pl.data.transforms.eval_geometry` then
  :func:`~resnet_pl.data.transforms.normalize` in evaluation), so a model sees the same
  evaluation inputs from shards as from the folder they came from.
- **Exactly once per epoch under DDP.** LitData assigns chunks to ranks (and to each rank's
  loader workers). Training: every sample is drawn at most once per epoch across all ranks;
  ``drop_last`` keeps only full batches with the same count on every rank (collectives need
  that), so up to ``world_size * batch_size - 1`` samples per epoch are left out -- the tail of
  that epoch's shuffled chunk order, so which ones changes from epoch to epoch. On one process
  ``drop_last`` is on when the split holds more than one batch (as the folder path). Validation
  and test are read by index, each rank a contiguous share without padding
  (:class:`ContiguousShareSampler`): every sample exactly once over all ranks. Ranks may then
  run a different number of batches; resnet-pl's evaluation steps run no collective, and the
  metrics are torchmetrics states summed over ranks at the epoch's end.
- **Exact resume.** ``StreamingDataLoader.state_dict()`` (epoch, samples yielded) goes into
  every checkpoint; a resumed run continues at the next sample. Augmentation draws are seeded
  per sample by ``(seed, epoch, index)``, so they do not depend on worker processes or on where
  the run restarted: a single-process run killed mid-epoch ends bit-identical to an uninterrupted
  one. Under DDP a resume with the same number of ranks, workers and batch size continues each
  rank exactly; with another layout LitData re-stripes the rest of the epoch (no sample repeated
  or dropped beyond ``drop_last``, batches composed differently).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, DistributedSampler

from resnet_pl.data.shards import (
    ShardImageDataset,
    ShardsError,
    ShardSplitView,
    join,
    read_manifest,
)
from resnet_pl.data.specs import DatasetSpec, default_norm
from resnet_pl.data.transforms import eval_geometry, train_geometry
from resnet_pl.errors import ResNetPLError
from resnet_pl.lightning.datamodules.base import ImageDataBase, check_norm
from resnet_pl.lightning.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["StreamingDataModule"]


try:
    from litdata import StreamingDataLoader as _LoaderBase
except ImportError:  # pragma: no cover - without the extra, building a loader says what to install
    from resnet_pl.data.shards import require_litdata

    class _LoaderBase:  # type: ignore[no-redef]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            require_litdata()


class EpochStreamingDataLoader(_LoaderBase):  # type: ignore[misc,valid-type]
    """LitData's ``StreamingDataLoader``, told when an epoch ends.

    Lightning stops drawing from a sized loader after ``len(loader)`` batches without exhausting
    its iterator, and LitData only learns that an epoch finished when its iterator runs out:
    after a resume its ``restore`` flag then stays set and the next epoch replays the resumed one
    (a resumed run silently loses an epoch). Here the epoch is marked finished as its last batch
    is handed out."""

    def __iter__(self) -> Any:
        per_epoch = len(self) * int(self.batch_size or 1)
        for batch in super().__iter__():
            if self._num_samples_yielded_streaming >= per_epoch:
                self.restore = False
            yield batch


class ContiguousShareSampler(DistributedSampler[int]):
    """Rank ``r`` of ``R`` takes samples ``[r * n // R, (r + 1) * n // R)`` in order: every sample
    exactly once over the ranks, no padding (``DistributedSampler`` repeats samples to even
    the shares, which would count them twice in the metrics), and each rank reads neighbouring
    samples, so whole chunks. A ``DistributedSampler`` so that Lightning keeps it under DDP."""

    def __init__(self, n: int, *, num_replicas: int = 1, rank: int = 0) -> None:
        indices: Any = range(n)  # DistributedSampler only needs the length
        super().__init__(indices, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.n = n
        self.begin = rank * n // num_replicas
        self.end = (rank + 1) * n // num_replicas

    def __iter__(self) -> Any:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin


class StreamingDataModule(ImageDataBase):
    """Image classification data streamed from LitData shards written by ``resnet-pl data
    optimize`` (``ImageDataModule("streaming", data_dir=OUT)``; registered in
    :data:`resnet_pl.lightning.data.DATA_MODULES`). Options beyond the shared ones
    (:class:`~resnet_pl.lightning.datamodules.base.ImageDataBase`):

    Args:
        data_dir: the shard set: a local folder or a ``s3://``/``gs://`` URL (``OUT`` of
            ``resnet-pl data optimize``; required).
        num_workers: loader processes per device; ``None``: ``min(8, cpu_count)``. Training
            starts them each epoch (LitData hands them the epoch's plan).
        seed: with the run's seed (``--seed_everything``), the shuffle and augmentation seed.
        image_size: default: the source dataset's for built-in data (28 for Fashion-MNIST),
            else 224.
        in_chans: 1 (grayscale) or 3 (RGB); default: the source dataset's for built-in data,
            else 3.
        augment: ``"standard"`` (the folder path's random resized crop + flip) or ``"none"``.
        hflip: override the flip default (the source dataset's for built-in data, else on).
        norm_mean, norm_std: default: the source dataset's statistics for built-in data, else
            ImageNet's for RGB, 0.5/0.5 for grayscale.
        cache_dir: where LitData keeps chunks downloaded from a bucket (default: LitData's
            cache folder, ``~/.lightning/chunks``); local shards are read in place.
        max_cache_size: local cache budget for a bucket, e.g. ``"50GB"`` (LitData evicts
            chunks already read beyond it).
        timeout: seconds to wait for a bucket's manifest before reporting it unreachable.

    The split, the held-out validation images, the subset and the bad-file policy were decided
    when the shards were written (``val_fraction`` and the ``*_subset`` options do not apply).
    """

    default_workers = min(8, os.cpu_count() or 1)
    dataset_class: type[ShardImageDataset] = ShardImageDataset
    yield_index: bool = False  # subclasses (audits, tests): batches (x, y, index in split)

    def __init__(
        self,
        dataset: str = "streaming",
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        seed: int = 0,
        image_size: int | None = None,
        augment: Literal["standard", "none"] = "standard",
        hflip: bool | None = None,
        random_erasing: float = 0.0,
        norm_mean: Sequence[float] | None = None,
        norm_std: Sequence[float] | None = None,
        crop_pct: float | None = None,
        in_chans: int | None = None,
        train_size_schedule: Sequence[Sequence[int]] | None = None,
        cache_dir: str | None = None,
        max_cache_size: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(
            dataset, None, batch_size, eval_batch_size, num_workers, 0.1, seed, image_size,
            augment, random_erasing, norm_mean, norm_std, None, None, None, crop_pct,
            train_size_schedule,
        )  # fmt: skip
        if not data_dir:
            raise ConfigError(
                "dataset 'streaming' needs data_dir: the OUT folder or URL of resnet-pl data "
                "optimize"
            )
        if in_chans is not None and in_chans not in (1, 3):
            raise ConfigError(f"in_chans must be 1 or 3, got {in_chans}")
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {timeout}")
        self.save_hyperparameters()
        # Under LightningCLI the recorded hyperparameters are ImageDataModule's options (the
        # class the CLI instantiated): add this module's own.
        for key, value in given.items():
            if key not in self.hparams:
                self.hparams[key] = value
        #: The shard set (a folder or a URL: kept as a string, a Path would mangle ``s3://``).
        self.shards_url = str(data_dir)
        self.data_dir = self.shards_url  # type: ignore[assignment]
        self._manifest: dict[str, Any] | None = None
        # Resolved now (reads the manifest): the model records the same keys.
        source = self.manifest.get("spec") or {}
        chans = in_chans or int(source.get("in_chans") or 3)
        if source.get("in_chans") and chans != int(source["in_chans"]):
            raise ConfigError(
                f"the shards hold {source['dataset']} ({source['in_chans']}-channel images); "
                f"in_chans {in_chans} does not fit"
            )
        check_norm(chans, norm_mean, norm_std)
        self._resolve(chans, int(source.get("image_size") or 224))

    # ---- what the model needs to know ---------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = read_manifest(self.shards_url, timeout=self.hparams["timeout"])
        return self._manifest

    @property
    def spec(self) -> DatasetSpec:
        source = self.manifest.get("spec") or {}
        chans = self.hparams["in_chans"]
        mean, std = default_norm(chans)
        return DatasetSpec(
            len(self.manifest["classes"]),
            chans,
            int(source.get("image_size") or 224),
            tuple(source.get("mean") or mean),
            tuple(source.get("std") or std),
            bool(source.get("hflip", True)),
            tuple(self.manifest["classes"]),
        )

    # ---- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self._check_model_classes()
        splits = self.manifest["counts"]
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self._split("train", train=True)
        if stage in (None, "fit", "validate") and self.val_set is None and "val" in splits:
            self.val_set = self._split("val", train=False)
        if stage in (None, "test", "predict") and self.test_set is None and "test" in splits:
            self.test_set = self._split("test", train=False)

    def _check_model_classes(self) -> None:
        """A model that already knows its classes (fine-tuning, resume, evaluation of a
        checkpoint) must name the same classes, in the same order, as the manifest."""
        trainer = self.trainer
        module = getattr(trainer, "lightning_module", None) if trainer is not None else None
        hp = module.hparams if module is not None else {}
        info = hp.get("data_info")  # ResNetClassifier's group; flat in older models
        names = (info if isinstance(info, dict) else hp).get("class_names")
        if names and list(names) != self.class_names:
            raise ShardsError(
                f"the shards at {self.shards_url} hold classes {self.class_names} but the model "
                f"was trained on {list(names)}; use shards of the model's classes, or fine-tune "
                f"with --model.data_info.class_names null to take the shards' classes"
            )

    def _seed(self) -> int:
        """The data seed mixed with the run's seed, as ``ImageDataModule`` mixes them."""
        seed = self.hparams["seed"] * 1_000_003 + int(os.environ.get("PL_GLOBAL_SEED", "0"))
        return seed % (1 << 31)

    def _split(self, split: str, *, train: bool) -> ShardImageDataset:
        count = int(self.manifest["counts"][split])
        augment = train and self.hparams["augment"] == "standard"
        transform = (
            train_geometry(self.image_size, hflip=self._hflip)
            if augment
            else eval_geometry(self.data_cfg)
        )
        ranks = self._world_size()
        options: dict[str, Any] = {
            "shuffle": train,
            "seed": self._seed(),
            # Training: full, equal batches on every rank. Evaluation: every sample once.
            "drop_last": train and (ranks > 1 or count > self.batch_size),
            "cache_dir": self.hparams["cache_dir"],
            "max_cache_size": self.hparams["max_cache_size"],
        }
        if options["max_cache_size"] is None:
            options.pop("max_cache_size")
        quiet = logging.getLogger("litdata.streaming.dataset")
        level = quiet.level
        if not train:
            quiet.setLevel(logging.ERROR)  # its drop_last=False warning: deliberate here
        try:
            return self.dataset_class(
                join(self.shards_url, split),
                in_chans=self.in_chans,
                transform=transform,
                augment_seed=self._seed() if augment else None,
                with_index=self.yield_index,
                **options,
            )
        except ResNetPLError:
            raise
        except Exception as err:  # LitData's own errors: one line naming the split
            raise ShardsError(
                f"cannot open split {split!r} of {self.shards_url} ({type(err).__name__}: "
                f"{' '.join(str(err).split())[:300]}); re-copy the shards or re-run resnet-pl "
                f"data optimize"
            ) from None
        finally:
            quiet.setLevel(level)

    def _world_size(self) -> int:
        return self._ranks()[0]

    def _stream_loader(self, ds: Any, split: str, train: bool) -> Any:
        if ds is None:
            raise ShardsError(
                f"the shards at {self.shards_url} have no {split} split; write one with resnet-pl "
                f"data optimize (a folder's {split}/ or --val_fraction)"
            )
        workers = self.hparams["num_workers"]
        if workers is None:
            workers = min(8, os.cpu_count() or 1)
        common: dict[str, Any] = {"num_workers": workers, "pin_memory": torch.cuda.is_available()}
        # Own generator: building an iterator (worker seeds) never draws from the global RNG,
        # so a resumed run's random stream continues exactly.
        common["generator"] = torch.Generator().manual_seed(self._seed())
        if train:
            # Workers are started per epoch: LitData hands the dataset's epoch to them then.
            return EpochStreamingDataLoader(
                ds, batch_size=self.batch_size, persistent_workers=False, **common
            )
        # Evaluation: each rank reads a contiguous share, no padding: every sample once, and
        # every rank has samples (LitData's own split would hand out whole batches only).
        count = int(self.manifest["counts"][split])
        ranks, rank = self._ranks()
        view = ShardSplitView(ds, count)
        return DataLoader(
            view,  # type: ignore[arg-type]
            batch_size=self.eval_batch_size,
            sampler=ContiguousShareSampler(count, num_replicas=ranks, rank=rank),
            persistent_workers=workers > 0,
            **common,
        )

    def train_dataloader(self) -> Any:
        return self._stream_loader(self.train_set, "train", True)

    def val_dataloader(self) -> Any:
        return self._stream_loader(self.val_set, "val", False)

    def test_dataloader(self) -> Any:
        return self._stream_loader(self.test_set, "test", False)

    def predict_dataloader(self) -> Any:
        return self.test_dataloader()
