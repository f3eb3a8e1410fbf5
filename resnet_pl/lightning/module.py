"""``ResNetClassifier``: a LightningModule that trains and evaluates any registered ResNet.

Designed for subclassing. The hooks a user overrides, in the order they run:

- :meth:`build_model` -> the network (default: ``create_model(arch, ...)``)
- :meth:`configure_losses` -> ``self.criterion``
- :meth:`configure_metrics` -> ``self.train_metrics`` / ``val_metrics`` / ``test_metrics``
- :meth:`compute_loss` (logits, targets) -> scalar loss
- :meth:`parameter_groups` -> optimizer groups (weight decay off for norms and biases; the
  backbone's learning rate scaled by ``backbone_lr_scale``)
- :meth:`configure_optimizers` (optimizer + schedule from the hyperparameters)

Every hyperparameter is a plain value (an arch name and options, never a module), so a
checkpoint loads with ``torch.load(..., weights_only=True)`` and ``load_from_checkpoint(path)``
rebuilds the model with no arguments.
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from resnet_pl.factory import create_model
from resnet_pl.lightning.errors import (
    ConfigError,
    NonFiniteLossError,
    UntrustedCheckpointError,
    checkpoint_load_error,
)
from resnet_pl.lightning.hparams import (  # noqa: F401 (their home before the grouping)
    ALL_GROUPS,
    CLASSIFIER_GROUPS,
    OPTIMIZERS,
    SCHEDULES,
    DataInfo,
    EvalConfig,
    FinetuneConfig,
    OptimConfig,
    Optimizer,
    RecipeConfig,
    Schedule,
    field_names,
    group_dict,
    legacy_names,
    migrate_flat,
)
from resnet_pl.lightning.validate import check_checkpoint_sizes
from resnet_pl.models.registry import get_builder, split_name
from resnet_pl.models.tta import check_mode, tta_logits


class ResNetClassifier(L.LightningModule):
    """Image classifier around a registered residual network.

    Args:
        arch: registry name (``resnet_pl.list_models()``), or ``"arch.tag"`` for pretrained
            weights when ``pretrained=True``.
        num_classes: classifier size (the CLI links it to the data's).
        in_chans: input channels (the CLI links it to the data's).
        pretrained: start from verified pretrained weights (head/stem adapted if they differ).
        weights: starting weights, one option for every source: a registry name
            (``wrn_16_2.fashion_mnist``), a Lightning checkpoint (``.ckpt``) or a
            ``save_pretrained`` folder (:mod:`resnet_pl.lightning.start_weights`). The
            architecture comes from the weights; the name and the file's sha256
            (``weights_sha256``) are recorded in checkpoints and model cards.
        weights_sha256: filled in when ``weights`` is loaded; a model restored from a
            checkpoint has it and does not read the starting weights again.
        model_kwargs: further options of the architecture (``drop_path_rate``, ``stem``...).
        model: a ready ``nn.Module`` instead of ``arch`` (not saved in the checkpoint: pass it
            again to ``load_from_checkpoint``).
        optim: optimiser and learning-rate schedule (:class:`OptimConfig`).
        finetune: frozen epochs and backbone learning rate (:class:`FinetuneConfig`).
        recipe: label smoothing, mixup/cutmix, stem whitening (:class:`RecipeConfig`).
        evaluation: weight averaging (EMA) and test-time augmentation (:class:`EvalConfig`).
        data_info: what the model was trained on (dataset, class names, normalisation, input
            size, crop): filled from the data module, saved in checkpoints (:class:`DataInfo`).
        channels_last: run the network in channels-last memory format (faster on GPUs with
            tensor cores and on many CPUs).
        compile: ``torch.compile`` the network (``nn.Module.compile``, so checkpoint keys do
            not change); its compile time is part of the first steps.

    Each group is a dataclass (or a plain dict of its fields); on the command line its fields
    are ``--model.<group>.<field>`` (``--model.optim.lr 0.2``). The flat names of before the
    grouping (``lr=0.2``, ``--model.lr``) still work, with a deprecation warning, and
    checkpoints that use them load unchanged (:mod:`resnet_pl.lightning.hparams`).
    """

    #: The option groups (name -> dataclass); a subclass adds its own by extending the mapping.
    HPARAM_GROUPS: ClassVar[dict[str, type]] = CLASSIFIER_GROUPS

    def __init__(
        self,
        arch: str = "resnet20",
        num_classes: int = 10,
        in_chans: int = 3,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        model: nn.Module | None = None,
        weights: str | None = None,
        weights_sha256: str | None = None,
        optim: OptimConfig = OptimConfig(),  # noqa: B008 (frozen)
        finetune: FinetuneConfig = FinetuneConfig(),  # noqa: B008
        recipe: RecipeConfig = RecipeConfig(),  # noqa: B008
        evaluation: EvalConfig = EvalConfig(),  # noqa: B008
        data_info: DataInfo = DataInfo(),  # noqa: B008
        channels_last: bool = False,
        compile: bool = False,
        **legacy: Any,
    ) -> None:
        super().__init__()
        _check_hparams(num_classes, in_chans)
        if model is None and weights is None:
            _check_arch(arch)
        # Plain values only: the module passed as ``model`` is never pickled into hparams.
        self.save_hyperparameters(ignore=["model"])
        self._group_hparams(legacy)
        if model is not None:
            self.hparams["arch"] = "custom"
            self._hparams_initial["arch"] = "custom"  # type: ignore[index]
        self.model = model if model is not None else self.build_model()
        self.configure_losses()
        self.configure_metrics()
        self._mix = self._build_mixing()
        if compile:
            self.model.compile()

    def _group_hparams(self, legacy: dict[str, Any]) -> None:
        """Hyperparameters in their final form: every group a complete plain dict, old flat
        names moved into their group (with a deprecation warning: they came from a call)."""
        groups = type(self).HPARAM_GROUPS
        old = legacy_names(groups)
        unknown = [k for k in legacy if k not in old and not k.startswith("_")]
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} got unknown argument(s) {', '.join(unknown)}; its "
                f"options are {', '.join(_init_names(type(self)))} (groups: "
                f"{', '.join(groups)})"
            )
        hp, moved = migrate_flat(dict(self.hparams), groups)
        if moved:
            names = ", ".join(f"{k} -> {old[k]}.{k}" for k in moved)
            warnings.warn(
                f"{type(self).__name__}: flat options are deprecated, use their groups "
                f"({names}; on the command line --model.{old[moved[0]]}.{moved[0]})",
                FutureWarning,
                stacklevel=3,
            )
        for group, cls in groups.items():
            hp[group] = group_dict(hp.get(group), cls, group)
        # Replaced whole (_set_hparams would merge, keeping the flat names).
        self._hparams = AttributeDict(hp)
        self._hparams_initial = copy.deepcopy(self._hparams)

    def group(self, name: str) -> Any:
        """Hyperparameter group ``name`` as its dataclass (a snapshot; ``hparams`` holds the
        plain dict)."""
        return self.HPARAM_GROUPS[name](**self.hparams[name])

    # ---- hooks a subclass may override -------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The network. Default: the registry's ``arch`` with this module's options."""
        hp = self.hparams
        options = dict(hp["model_kwargs"] or {})
        if hp.get("weights"):
            from resnet_pl.lightning.start_weights import build_from_weights

            return build_from_weights(self)
        try:
            return create_model(
                hp["arch"],
                pretrained=hp["pretrained"],
                num_classes=hp["num_classes"],
                in_chans=hp["in_chans"],
                **options,
            )
        except TypeError as err:  # an option the architecture does not take
            if "keyword argument" not in str(err):
                raise
            raise ConfigError(f"{hp['arch']}: bad model_kwargs {options}: {err}") from None
        except ValueError as err:  # an option value the architecture refuses
            if type(err) is not ValueError:  # our own, more specific errors (weights...)
                raise
            raise ConfigError(f"{hp['arch']}: {err}") from None

    def configure_losses(self) -> None:
        """Set ``self.criterion``; the default is cross-entropy with label smoothing, which also
        accepts the soft targets that mixup/cutmix produce."""
        self.criterion = nn.CrossEntropyLoss(
            label_smoothing=self.hparams["recipe"]["label_smoothing"]
        )

    def configure_metrics(self) -> None:
        """One collection cloned per stage (``train_``, ``val_``, ``test_`` prefixes), plus
        per-class accuracy and a confusion matrix for validation and test."""
        n = self.hparams["num_classes"]
        metrics: dict[str, Any] = {
            "acc": MulticlassAccuracy(n, average="micro"),
            "f1": MulticlassF1Score(n, average="macro"),
        }
        if n > 5:
            metrics["top5"] = MulticlassAccuracy(n, top_k=5, average="micro")
        collection = MetricCollection(metrics)
        self.train_metrics = collection.clone(prefix="train_")
        self.val_metrics = collection.clone(prefix="val_")
        self.test_metrics = collection.clone(prefix="test_")
        self.val_per_class = MulticlassAccuracy(n, average=None)
        self.test_per_class = MulticlassAccuracy(n, average=None)
        self.test_confusion = MulticlassConfusionMatrix(n)

    def compute_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Loss of a batch; ``targets`` are class indices or (with mixing) probabilities."""
        return self.criterion(logits, targets)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups: no weight decay on 1-D parameters (norm weights, biases); the
        backbone (everything but the classifier) at ``lr * backbone_lr_scale``, times
        ``layer_decay`` per level below the head; each group's ``"lr"`` is its real rate
        (:func:`resnet_pl.lightning.finetune.build_parameter_groups`)."""
        from resnet_pl.lightning.finetune import build_parameter_groups

        optim, finetune = self.hparams["optim"], self.hparams["finetune"]
        return build_parameter_groups(
            self.model,
            lr=_lr_value(optim["lr"]),
            weight_decay=optim["weight_decay"],
            backbone_lr_scale=finetune["backbone_lr_scale"],
            layer_decay=finetune.get("layer_decay", 1.0),
            norm_bias_lr_scale=optim["norm_bias_lr_scale"],
        )

    def configure_optimizers(self) -> Any:
        hp = self.hparams["optim"]
        groups = self.parameter_groups()
        lr = _lr_value(hp["lr"])
        if hp["optimizer"] == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=lr, momentum=hp["momentum"], nesterov=hp["nesterov"]
            )
        elif hp["optimizer"] == "adam":
            opt = torch.optim.Adam(groups, lr=lr, betas=tuple(hp["betas"]))
        else:
            opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(hp["betas"]))
        schedule = hp["scheduler"]
        if schedule == "none":
            return opt
        if schedule == "step":
            step = torch.optim.lr_scheduler.MultiStepLR(
                opt, milestones=list(hp["step_milestones"]), gamma=hp["step_gamma"]
            )
            return {"optimizer": opt, "lr_scheduler": {"scheduler": step, "interval": "epoch"}}
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        if schedule == "onecycle":
            sched: Any = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=[g["lr"] for g in groups], total_steps=total
            )
        else:
            epochs = max(self.trainer.max_epochs or 1, 1)
            warmup = int(total * hp["warmup_epochs"] / epochs) if hp["warmup_epochs"] else 0
            shape = _warmup_linear if schedule == "linear" else _warmup_cosine
            sched = torch.optim.lr_scheduler.LambdaLR(opt, shape(warmup, total, hp["min_lr_ratio"]))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- forward and steps -----------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.hparams["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        targets: Tensor = y
        if self._mix is not None:
            x, targets = self._mix(x, y)
        logits = self(x)
        loss = self.compute_loss(logits, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at global step {self.global_step} (epoch "
                f"{self.current_epoch}, batch {batch_idx}); training stopped so the last good "
                f"checkpoint is kept. Lower the learning rate, check the data, or use "
                f"precision 32 / gradient clipping (--trainer.gradient_clip_val)."
            )
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        if self._mix is None:
            self.train_metrics.update(logits.detach(), y)
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def eval_logits(self, x: Tensor) -> Tensor:
        """Logits for evaluation: ``forward`` averaged over the ``tta`` views."""
        return tta_logits(self, x, self.hparams["evaluation"]["tta"])

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self.eval_logits(x)
        loss = F.cross_entropy(logits, y)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        per_class = self.val_per_class if stage == "val" else self.test_per_class
        metrics.update(logits, y)
        per_class.update(logits, y)
        if stage == "test":
            self.test_confusion.update(logits, y)
        # sync_dist averages the loss over DDP ranks; torchmetrics objects sync themselves.
        self.log(f"{stage}_loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict(metrics, prog_bar=stage == "val")
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_per_class(self.val_per_class, "val")

    def on_test_epoch_end(self) -> None:
        self._log_per_class(self.test_per_class, "test")
        # compute() syncs over ranks; keep the matrix for the plotting callback.
        self.last_confusion_matrix = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def _log_per_class(self, metric: MulticlassAccuracy, stage: str) -> None:
        values = metric.compute()
        metric.reset()
        names = self.class_names
        for i, v in enumerate(values):
            self.log(f"{stage}_acc_class/{_slug(names[i])}", v)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Class indices, probabilities and names for a batch (``(x, y)`` or ``x``)."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        probs = self.eval_logits(x).softmax(dim=1)
        indices = probs.argmax(dim=1)
        names = self.class_names
        return {
            "indices": indices,
            "probs": probs,
            "names": [names[i] for i in indices.tolist()],
        }

    # ---- data-derived metadata and checks ----------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        names = self.hparams["data_info"]["class_names"]
        return list(names) if names else [str(i) for i in range(self.hparams["num_classes"])]

    def setup(self, stage: str) -> None:
        """Check the data agrees with the model before any step runs, and record what the data
        is (class names, normalisation) in the hyperparameters so checkpoints carry it."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if dm is None:
            return
        n_data = getattr(dm, "num_classes", None)
        if n_data is not None and n_data != self.hparams["num_classes"]:
            raise ConfigError(
                f"the model has num_classes={self.hparams['num_classes']} but the dataset "
                f"{getattr(dm, 'dataset', '')!r} has {n_data} classes; set model num_classes "
                f"to {n_data} (the resnet-pl CLI links it from the data automatically)"
            )
        c_data = getattr(dm, "in_chans", None)
        if c_data is not None and c_data != self.hparams["in_chans"]:
            raise ConfigError(
                f"the model expects in_chans={self.hparams['in_chans']} but the dataset has "
                f"{c_data}-channel images; set model in_chans to {c_data}"
            )
        tta = self.hparams["evaluation"]["tta"]
        spec = getattr(dm, "spec", None)
        flip_ok = bool(getattr(dm, "_hflip", getattr(spec, "hflip", True)))
        try:
            check_mode(tta, flip_allowed=flip_ok)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if stage == "fit" and self.hparams["recipe"]["whiten_stem"]:
            # Runs before Lightning restores a checkpoint, so a resumed run still gets its
            # saved weights; the whitening itself uses no random numbers.
            self._whiten_from_data(dm)
        info = self.hparams["data_info"]
        for key in field_names(DataInfo):
            if info.get(key) is None and getattr(dm, key, None) is not None:
                value = getattr(dm, key)
                value = list(value) if isinstance(value, tuple | list) else value
                info[key] = value
                # Also in the initial copy, which loggers record.
                self._hparams_initial["data_info"][key] = value  # type: ignore[index]

    def configure_callbacks(self) -> list[L.Callback]:
        """The weight average (``ema_decay > 0``) while fitting. Outside fit the checkpoint's
        ``state_dict`` already holds the averaged weights."""
        evaluation = self.hparams["evaluation"]
        decay = evaluation["ema_decay"]
        trainer = self._trainer
        fitting = trainer is not None and trainer.state.fn == "fit"
        if not decay or not fitting:
            return []
        from resnet_pl.lightning.ema import EMA

        return [EMA(decay, evaluation["ema_every_n_steps"])]

    def whiten_stem_(self, images: Tensor) -> None:
        """Patch-whitening initialisation of the first convolution from normalised float
        ``images`` (``whiten_stem=True`` calls it with training images before fit)."""
        from resnet_pl.models.init import whiten_conv_

        conv = getattr(self.model, "conv1", None)
        if not isinstance(conv, nn.Conv2d):
            raise ConfigError("whiten_stem needs a model whose first convolution is `conv1`")
        whiten_conv_(conv, images)

    def _whiten_from_data(self, dm: Any) -> None:
        from resnet_pl.lightning.augment import batch_augment

        ds = getattr(dm, "train_set", None)
        if ds is None:
            raise ConfigError("whiten_stem needs training data (the datamodule has no train_set)")
        n = min(len(ds), 4096)
        images = getattr(ds, "images", None)
        x = images[:n] if images is not None else torch.stack([ds[i][0] for i in range(n)])
        x = batch_augment(x, size=dm.image_size, mean=dm.mean, std=dm.std)
        self.whiten_stem_(x)

    def on_fit_start(self) -> None:
        if self.hparams["channels_last"]:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # ---- fine-tuning hooks (resnet_pl.lightning.finetune) ------------------------------------
    def frozen_depths(self, epoch: int | None = None) -> set[int]:
        """Depths (0 = stem; the head is never frozen) frozen in ``epoch`` (default: now)."""
        from resnet_pl.lightning.finetune import frozen_depths, parameter_depths

        ft = self.hparams["finetune"]
        _, head_depth = parameter_depths(self.model)
        return frozen_depths(
            self.current_epoch if epoch is None else epoch,
            head_depth,
            ft["freeze_backbone_epochs"],
            ft.get("unfreeze_interval", 0),
        )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        from resnet_pl.lightning.finetune import set_frozen_norms_eval

        train_bn = self.hparams["finetune"].get("train_bn", False)
        set_frozen_norms_eval(self.model, self.frozen_depths(), train_bn)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Lightning's step, with the frozen groups' learning rate at 0 for this step only."""
        from resnet_pl.lightning.finetune import gated_step

        train_bn = self.hparams["finetune"].get("train_bn", False)
        with gated_step(optimizer, self.frozen_depths(epoch), train_bn):
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    # ---- fine-tuning helpers -----------------------------------------------------------------
    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        head = self._head_parameter_ids()
        return (p for p in self.model.parameters() if id(p) not in head)

    def set_backbone_trainable(self, trainable: bool) -> None:
        """Freeze (``False``) or unfreeze the backbone. Frozen BatchNorms use their running
        statistics, so a small fine-tuning batch cannot disturb them."""
        for p in self.backbone_parameters():
            p.requires_grad_(trainable)
        head = self._head_module()
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m is not head:
                m.train(trainable and self.training)

    def _head_module(self) -> nn.Module | None:
        get = getattr(self.model, "get_classifier", None)
        return get() if callable(get) else getattr(self.model, "fc", None)

    def _head_parameter_ids(self) -> set[int]:
        head = self._head_module()
        return {id(p) for p in head.parameters()} if head is not None else set()

    # ---- checkpoints ------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: Any,
        map_location: Any = None,
        hparams_file: Any = None,
        strict: bool | None = None,
        weights_only: bool | None = True,
        **kwargs: Any,
    ) -> Any:
        """Lightning's ``load_from_checkpoint``, safe by default: the file is read with the
        restricted unpickler (``weights_only=True``, which resnet-pl checkpoints satisfy). A file
        that needs a full unpickle raises :class:`UntrustedCheckpointError`; pass
        ``weights_only=False`` only for a file from a source you trust."""
        safe = weights_only is not False
        if safe and isinstance(checkpoint_path, str | Path) and Path(checkpoint_path).is_file():
            # Sizes bounded and checked against the stored weights before anything is built.
            check_checkpoint_sizes(Path(checkpoint_path), f"checkpoint {checkpoint_path}")
        try:
            source = cls._migrated_source(checkpoint_path, safe, kwargs)
            return super().load_from_checkpoint(
                source,
                map_location=map_location,
                hparams_file=hparams_file,
                strict=strict,
                weights_only=safe,
                **kwargs,
            )
        except pickle.UnpicklingError as err:  # raised by torch.load's restricted unpickler
            if not safe or isinstance(err, UntrustedCheckpointError):
                raise
            raise checkpoint_load_error(checkpoint_path, err, "weights_only=False") from None

    @classmethod
    def _migrated_source(cls, path: Any, safe: bool, kwargs: dict[str, Any]) -> Any:
        """``path``, or an in-memory copy of the checkpoint with its hyperparameters in today's
        form when they use the flat names of before the grouping (``lr``, ``ema_decay``,
        ``mean``...; see :mod:`resnet_pl.lightning.hparams`). Flat names among ``kwargs`` move
        into the copy's groups, with a deprecation warning."""
        if isinstance(path, str | Path) and "://" in str(path):
            return path  # remote files: read by Lightning as they are
        if isinstance(path, str | Path):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=safe, mmap=True)
        else:
            data = path.read()
            path = io.BytesIO(data)
            ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=safe)
        hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
        if not isinstance(hp, dict):
            return path
        groups = ALL_GROUPS if "_class_path" in hp else cls.HPARAM_GROUPS
        old = legacy_names(groups)
        flat_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in old and k not in groups}
        if flat_kwargs:
            warnings.warn(
                "load_from_checkpoint: flat options are deprecated, use their groups ("
                + ", ".join(f"{k} -> {old[k]}.{k}" for k in flat_kwargs)
                + ")",
                FutureWarning,
                stacklevel=3,
            )
        migrated, moved = migrate_flat({**hp, **flat_kwargs}, groups)
        if "_class_path" not in hp:
            # As Lightning does for a class without **kwargs: keys the class does not take
            # (a distillation checkpoint read as a plain classifier) are left out.
            keep = {*_init_names(cls), *groups}
            migrated = {k: v for k, v in migrated.items() if k in keep or k.startswith("_")}
        if not moved and migrated.keys() == hp.keys():
            return path
        ckpt["hyper_parameters"] = migrated
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
        buffer.seek(0)
        return buffer

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Fine-tuning to a new head: ``load_from_checkpoint(path, num_classes=5)`` keeps the
        backbone and re-initialises the classifier, with a warning (never a blanket
        ``strict=False``: only the classifier's keys are replaced)."""
        state = checkpoint["state_dict"]
        head = self._head_module()
        prefix = next(
            (f"model.{name}." for name, m in self.model.named_modules() if m is head), "model.fc."
        )
        # Compare shapes, not saved hparams: LightningCLI's instantiator rewrites those.
        current = {k: v for k, v in self.state_dict().items() if k.startswith(prefix)}
        if all(k in state and state[k].shape == v.shape for k, v in current.items()):
            return
        old = state.get(f"{prefix}weight")
        n_saved = old.shape[0] if old is not None else "?"
        n_now = self.hparams["num_classes"]
        for key in [k for k in state if k.startswith(prefix)]:
            del state[key]
        state.update(current)
        info = self.hparams["data_info"]
        if info.get("class_names") and len(info["class_names"]) != n_now:
            info["class_names"] = None
        warnings.warn(
            f"checkpoint head has {n_saved} classes, model has {n_now}: the classifier "
            f"({prefix}*) is re-initialised; the backbone is loaded from the checkpoint",
            stacklevel=2,
        )

    def _build_mixing(self) -> Any:
        from torchvision.transforms import v2

        n = self.hparams["num_classes"]
        recipe = self.hparams["recipe"]
        mixes = []
        if recipe["mixup_alpha"] > 0:
            mixes.append(v2.MixUp(alpha=recipe["mixup_alpha"], num_classes=n))
        if recipe["cutmix_alpha"] > 0:
            mixes.append(v2.CutMix(alpha=recipe["cutmix_alpha"], num_classes=n))
        if not mixes:
            return None
        return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def _warmup_cosine(warmup: int, total: int, floor: float) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _warmup_linear(warmup: int, total: int, floor: float) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        # The first step after warm-up already decays, and the last one lands on the floor.
        progress = min((step - warmup + 1) / max(total - warmup, 1), 1.0)
        return floor + (1 - floor) * (1.0 - progress)

    return factor


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower() or "class"


def _check_arch(arch: str) -> None:
    """An unknown architecture name fails here, naming close matches."""
    try:
        get_builder(split_name(arch)[0])
    except ValueError as err:  # UnknownModelError
        raise ConfigError(str(err)) from None


def _lr_value(lr: Any) -> float:
    if lr == "auto":
        raise ConfigError(
            "lr is 'auto' but the learning-rate finder has not run: it runs at the start of "
            "`resnet-pl fit` (or call resnet_pl.lightning.finetune.find_lr(trainer, model, data))"
        )
    return float(lr)


def _check_hparams(num_classes: int, in_chans: int) -> None:
    """Bad top-level configuration fails here, before any data is read or step is run (each
    group checks its own options: :mod:`resnet_pl.lightning.hparams`)."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ConfigError(f"in_chans must be a positive integer, got {in_chans!r}")


def _init_names(cls: type) -> list[str]:
    import inspect

    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is L.LightningModule:
            break
        for p in inspect.signature(init).parameters.values():
            keyword = p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            if keyword and p.name != "self" and p.name not in names:
                names.append(p.name)
    return names
