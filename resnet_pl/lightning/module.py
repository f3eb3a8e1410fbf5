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

import math
import pickle
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
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
from resnet_pl.models.registry import get_builder, split_name
from resnet_pl.models.tta import TTAMode, check_mode, tta_logits

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["cosine", "linear", "onecycle", "step", "none"]
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "linear", "onecycle", "step", "none")


class ResNetClassifier(L.LightningModule):
    """Image classifier around a registered residual network.

    Args:
        arch: registry name (``resnet_pl.list_models()``), or ``"arch.tag"`` for pretrained
            weights when ``pretrained=True``.
        num_classes: classifier size (the CLI links it to the data's).
        in_chans: input channels (the CLI links it to the data's).
        pretrained: start from verified pretrained weights (head/stem adapted if they differ).
        model_kwargs: further options of the architecture (``drop_path_rate``, ``stem``...).
        model: a ready ``nn.Module`` instead of ``arch`` (not saved in the checkpoint: pass it
            again to ``load_from_checkpoint``).
        optimizer: ``sgd`` (Nesterov momentum), ``adam`` or ``adamw``.
        lr: peak learning rate; weight_decay: L2 / decoupled decay, never on norms or biases.
        momentum, nesterov: for SGD; betas: for Adam/AdamW.
        scheduler: ``cosine`` (linear warm-up then cosine to ``min_lr_ratio * lr``),
            ``linear`` (linear warm-up then linear decay to ``min_lr_ratio * lr``: the
            triangular schedule of fast-training recipes), ``onecycle``, ``step`` (x
            ``step_gamma`` at each ``step_milestones`` epoch), ``none``.
        warmup_epochs: linear warm-up length for ``cosine`` (may be fractional).
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha, cutmix_alpha: batch mixing (torchvision v2 MixUp/CutMix); 0 disables.
        freeze_backbone_epochs: train only the head for this many epochs, then everything.
            Frozen parameter groups stay in the optimizer with a zero step
            (:mod:`resnet_pl.lightning.finetune`), so exact resume and DDP keep working.
        backbone_lr_scale: discriminative learning rate: backbone lr = ``lr * scale``.
        layer_decay: layer-wise learning-rate decay: a group ``k`` levels below the head
            (stem = deepest) trains at ``lr * layer_decay ** k``, set on the group itself so
            every torch/Lightning scheduler applies it. 1.0 disables.
        unfreeze_interval: gradual unfreezing: after ``freeze_backbone_epochs``, thaw one level
            every this many epochs from the top (0: the whole backbone at once).
        train_bn: while frozen, keep training BatchNorm layers (affine parameters and running
            statistics, fastai's default); ``False`` keeps them exactly as loaded.
        weights: starting weights, one flag for every source: a registry name
            (``wrn_16_2.fashion_mnist``), a Lightning checkpoint (``.ckpt``) or a
            ``save_pretrained`` folder. The architecture comes from the weights; the name and
            the file's sha256 are recorded (``weights_sha256``) in checkpoints and model cards.
        weights_sha256: filled in when ``weights`` is loaded; a model restored from a
            checkpoint has it and does not read the starting weights again.
        channels_last: run the network in channels-last memory format (faster on GPUs with
            tensor cores and on many CPUs).
        norm_bias_lr_scale: learning-rate multiplier for BatchNorm biases (airbench trains
            them 64x faster); they never get weight decay.
        ema_decay: keep an exponential moving average of the weights (and BN statistics) with
            this decay, warmed up over the first steps (:class:`resnet_pl.lightning.ema.EMA`,
            on Lightning's ``WeightAveraging``); validation, checkpoints and everything that
            reads them (test, classify, export, hub) use the average. ``0`` disables.
        ema_every_n_steps: update the average every N optimizer steps.
        tta: test-time augmentation for validate/test/predict: ``none``, ``flip`` (2 views),
            ``shift`` (3), ``flip_shift`` (6); recorded in checkpoints so ``resnet-pl test``,
            ``classify`` and ``hub verify`` use the same views (:mod:`resnet_pl.models.tta`).
        whiten_stem: before the first step of a new run, set the first convolution's filters
            to the patch-whitening transform of training images (airbench's data-dependent
            initialisation; :func:`resnet_pl.models.init.whiten_conv_`).
        compile: ``torch.compile`` the network (``nn.Module.compile``, so checkpoint keys do
            not change); its compile time is part of the first steps.
        class_names, mean, std, input_size, crop_pct, dataset: what the model was trained on;
            filled from the datamodule when not given, saved in checkpoints so exports and
            ``classify`` pre-process and label as evaluation did.
    """

    def __init__(
        self,
        arch: str = "resnet20",
        num_classes: int = 10,
        in_chans: int = 3,
        pretrained: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        model: nn.Module | None = None,
        optimizer: Optimizer = "sgd",
        lr: float | Literal["auto"] = 0.1,
        momentum: float = 0.9,
        nesterov: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 5e-4,
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 1.0,
        min_lr_ratio: float = 0.0,
        step_milestones: Sequence[int] = (30, 60, 80),
        step_gamma: float = 0.1,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        freeze_backbone_epochs: int = 0,
        backbone_lr_scale: float = 1.0,
        layer_decay: float = 1.0,
        unfreeze_interval: int = 0,
        train_bn: bool = False,
        weights: str | None = None,
        weights_sha256: str | None = None,
        channels_last: bool = False,
        norm_bias_lr_scale: float = 1.0,
        ema_decay: float = 0.0,
        ema_every_n_steps: int = 1,
        tta: TTAMode = "none",
        whiten_stem: bool = False,
        compile: bool = False,
        class_names: list[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        input_size: Sequence[int] | None = None,
        dataset: str | None = None,
        crop_pct: float | None = None,
    ) -> None:
        super().__init__()
        from resnet_pl.lightning.finetune import check_finetune_options

        check_finetune_options(lr, layer_decay, unfreeze_interval, freeze_backbone_epochs)
        lr_checked = 1.0 if lr == "auto" else lr
        _check_hparams(optimizer, lr_checked, weight_decay, scheduler, num_classes, in_chans,
                       label_smoothing, mixup_alpha, cutmix_alpha, backbone_lr_scale)  # fmt: skip
        _check_recipe(norm_bias_lr_scale, ema_decay, ema_every_n_steps, tta)
        if model is None and weights is None:
            _check_arch(arch)
        # Plain values only: the module passed as ``model`` is never pickled into hparams.
        self.save_hyperparameters(ignore=["model"])
        if model is not None:
            self.hparams["arch"] = "custom"
        self.model = model if model is not None else self.build_model()
        self.configure_losses()
        self.configure_metrics()
        self._mix = self._build_mixing()
        if compile:
            self.model.compile()

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
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.hparams["label_smoothing"])

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

        hp = self.hparams
        return build_parameter_groups(
            self.model,
            lr=_lr_value(hp["lr"]),
            weight_decay=hp["weight_decay"],
            backbone_lr_scale=hp["backbone_lr_scale"],
            layer_decay=hp.get("layer_decay", 1.0),
            norm_bias_lr_scale=hp.get("norm_bias_lr_scale", 1.0),
        )

    def configure_optimizers(self) -> Any:
        hp = self.hparams
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
        return tta_logits(self, x, self.hparams.get("tta", "none"))

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
        names = self.hparams.get("class_names")
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
        tta = self.hparams.get("tta", "none")
        spec = getattr(dm, "spec", None)
        flip_ok = bool(getattr(dm, "_hflip", getattr(spec, "hflip", True)))
        try:
            check_mode(tta, flip_allowed=flip_ok)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if stage == "fit" and self.hparams.get("whiten_stem"):
            # Runs before Lightning restores a checkpoint, so a resumed run still gets its
            # saved weights; the whitening itself uses no random numbers.
            self._whiten_from_data(dm)
        for key in ("class_names", "mean", "std", "input_size", "crop_pct", "dataset"):
            if self.hparams.get(key) is None and getattr(dm, key, None) is not None:
                value = getattr(dm, key)
                value = list(value) if isinstance(value, tuple | list) else value
                self.hparams[key] = value
                # Also in the initial copy, which loggers record and Lightning compares with
                # the datamodule's hparams (they share the key ``dataset``).
                self._hparams_initial[key] = value  # type: ignore[index,operator,assignment]

    def configure_callbacks(self) -> list[L.Callback]:
        """The weight average (``ema_decay > 0``) while fitting. Outside fit the checkpoint's
        ``state_dict`` already holds the averaged weights."""
        decay = self.hparams.get("ema_decay", 0.0)
        trainer = self._trainer
        fitting = trainer is not None and trainer.state.fn == "fit"
        if not decay or not fitting:
            return []
        from resnet_pl.lightning.ema import EMA

        return [EMA(decay, self.hparams.get("ema_every_n_steps", 1))]

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

        hp = self.hparams
        _, head_depth = parameter_depths(self.model)
        return frozen_depths(
            self.current_epoch if epoch is None else epoch,
            head_depth,
            hp["freeze_backbone_epochs"],
            hp.get("unfreeze_interval", 0),
        )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        from resnet_pl.lightning.finetune import set_frozen_norms_eval

        set_frozen_norms_eval(self.model, self.frozen_depths(), self.hparams.get("train_bn", False))

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        """Lightning's step, with the frozen groups' learning rate at 0 for this step only."""
        from resnet_pl.lightning.finetune import gated_step

        frozen = self.frozen_depths(epoch)
        with gated_step(optimizer, frozen, self.hparams.get("train_bn", False)):
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
        try:
            return super().load_from_checkpoint(
                checkpoint_path,
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
        if self.hparams.get("class_names") and len(self.hparams["class_names"]) != n_now:
            self.hparams["class_names"] = None
        warnings.warn(
            f"checkpoint head has {n_saved} classes, model has {n_now}: the classifier "
            f"({prefix}*) is re-initialised; the backbone is loaded from the checkpoint",
            stacklevel=2,
        )

    def _build_mixing(self) -> Any:
        from torchvision.transforms import v2

        n = self.hparams["num_classes"]
        mixes = []
        if self.hparams["mixup_alpha"] > 0:
            mixes.append(v2.MixUp(alpha=self.hparams["mixup_alpha"], num_classes=n))
        if self.hparams["cutmix_alpha"] > 0:
            mixes.append(v2.CutMix(alpha=self.hparams["cutmix_alpha"], num_classes=n))
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


def _check_recipe(norm_bias_lr_scale: float, ema_decay: float, ema_every: int, tta: str) -> None:
    if not (norm_bias_lr_scale > 0 and math.isfinite(norm_bias_lr_scale)):
        raise ConfigError(f"norm_bias_lr_scale must be a positive number, got {norm_bias_lr_scale}")
    if not 0.0 <= ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1) (0 disables the average), got {ema_decay}")
    if not isinstance(ema_every, int) or ema_every < 1:
        raise ConfigError(f"ema_every_n_steps must be a positive integer, got {ema_every!r}")
    try:
        check_mode(tta)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _lr_value(lr: Any) -> float:
    if lr == "auto":
        raise ConfigError(
            "lr is 'auto' but the learning-rate finder has not run: it runs at the start of "
            "`resnet-pl fit` (or call resnet_pl.lightning.finetune.find_lr(trainer, model, data))"
        )
    return float(lr)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower() or "class"


def _check_arch(arch: str) -> None:
    """An unknown architecture name fails here, naming close matches."""
    try:
        get_builder(split_name(arch)[0])
    except ValueError as err:  # UnknownModelError
        raise ConfigError(str(err)) from None


def _check_hparams(
    optimizer: str,
    lr: float,
    weight_decay: float,
    scheduler: str,
    num_classes: int,
    in_chans: int,
    label_smoothing: float,
    mixup_alpha: float,
    cutmix_alpha: float,
    backbone_lr_scale: float,
) -> None:
    """Bad configuration fails here, before any data is read or step is run."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if scheduler not in SCHEDULES:
        raise ConfigError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULES)}")
    if isinstance(lr, bool) or not (isinstance(lr, int | float) and lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive number, got {lr!r}")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ConfigError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(in_chans, int) or in_chans < 1:
        raise ConfigError(f"in_chans must be a positive integer, got {in_chans!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ConfigError("mixup_alpha and cutmix_alpha must be >= 0")
    if backbone_lr_scale < 0:
        raise ConfigError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale}")
