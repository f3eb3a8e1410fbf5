"""The option groups of :class:`~resnet_pl.lightning.module.ResNetClassifier` (and of
:class:`~resnet_pl.lightning.distill.DistillationClassifier`), and the migration of the flat
hyperparameters that checkpoints, configs and calls from before the grouping use.

Each group is a frozen dataclass: LightningCLI shows its fields as ``--model.<group>.<field>``
(``--model.optim.lr 0.2``), a YAML config nests them (``model: {optim: {lr: 0.2}}``), and Python
passes an instance (``optim=OptimConfig(lr=0.2)``) or a plain dict. The module stores every group
in its hyperparameters as a **plain dict** (never the dataclass), so checkpoints keep loading with
``torch.load(weights_only=True)``.

Adding an option is one field in one dataclass (with its line in the ``Args`` of the docstring,
which is what ``--help`` prints, and a check in :meth:`check` when values can be wrong). A
checkpoint written before the field existed loads with the field's default.

Before the grouping every option was a top-level argument with the same name as its field now
(``lr`` is ``optim.lr``): :func:`migrate_flat` moves such names into their group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from resnet_pl.lightning.errors import ConfigError
from resnet_pl.lightning.validate import check_optimizer_values, check_schedule_values
from resnet_pl.models.tta import TTAMode, check_mode

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["cosine", "linear", "onecycle", "step", "none"]
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "linear", "onecycle", "step", "none")


def _positive(name: str, value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation (``--model.optim.*``).

    Args:
        optimizer: ``sgd`` (with momentum, Nesterov by default), ``adam`` or ``adamw``.
        lr: peak learning rate; ``auto``: Lightning's learning-rate finder picks it at the
            start of ``fit`` (:func:`resnet_pl.lightning.finetune.find_lr`).
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        betas: Adam/AdamW betas.
        weight_decay: L2 (SGD, Adam) or decoupled (AdamW) decay; never on norms or biases.
        scheduler: ``cosine`` (linear warm-up, then cosine to ``min_lr_ratio * lr``),
            ``linear`` (linear warm-up, then linear decay to ``min_lr_ratio * lr``),
            ``onecycle``, ``step`` (x ``step_gamma`` at each ``step_milestones`` epoch), ``none``.
        warmup_epochs: linear warm-up length of ``cosine``/``linear`` (may be fractional).
        min_lr_ratio: floor of ``cosine``/``linear`` as a fraction of ``lr``.
        step_milestones: epochs at which ``step`` multiplies the rate by ``step_gamma``.
        step_gamma: factor of ``step``.
        norm_bias_lr_scale: learning-rate multiplier of BatchNorm biases (airbench trains them
            64x faster); they never get weight decay.
    """

    optimizer: Optimizer = "sgd"
    lr: float | Literal["auto"] = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    scheduler: Schedule = "cosine"
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0
    step_milestones: Sequence[int] = (30, 60, 80)
    step_gamma: float = 0.1
    norm_bias_lr_scale: float = 1.0

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.scheduler not in SCHEDULES:
            raise ConfigError(
                f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULES)}"
            )
        if self.lr != "auto":
            _positive("lr", self.lr)
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        _positive("norm_bias_lr_scale", self.norm_bias_lr_scale)
        # momentum/betas in [0, 1), warmup >= 0, min_lr_ratio in [0, 1] (< 0: gradient ascent)
        check_optimizer_values(self.momentum, self.betas)
        check_schedule_values(
            self.warmup_epochs, self.min_lr_ratio, self.step_milestones, self.step_gamma
        )


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning a pretrained backbone (``--model.finetune.*``).

    Args:
        freeze_backbone_epochs: train only the head for this many epochs, then everything.
            Frozen parameter groups stay in the optimizer and take a zero step
            (:mod:`resnet_pl.lightning.finetune`), so exact resume and DDP keep working.
        backbone_lr_scale: discriminative learning rate: backbone lr = ``lr * scale``.
        layer_decay: layer-wise learning-rate decay: a group ``k`` levels below the head
            (stem = deepest) trains at ``lr * layer_decay ** k``, set on the group itself so
            every torch/Lightning scheduler applies it. 1.0 disables.
        unfreeze_interval: gradual unfreezing: after ``freeze_backbone_epochs``, thaw one level
            every this many epochs from the top (0: the whole backbone at once).
        train_bn: while frozen, keep training BatchNorm layers (affine parameters and running
            statistics, fastai's default); ``False`` keeps them exactly as loaded.
    """

    freeze_backbone_epochs: int = 0
    backbone_lr_scale: float = 1.0
    layer_decay: float = 1.0
    unfreeze_interval: int = 0
    train_bn: bool = False

    def check(self) -> None:
        if self.backbone_lr_scale < 0:
            raise ConfigError(f"backbone_lr_scale must be >= 0, got {self.backbone_lr_scale}")
        if not isinstance(self.freeze_backbone_epochs, int) or self.freeze_backbone_epochs < 0:
            raise ConfigError(
                f"freeze_backbone_epochs must be an integer >= 0, got "
                f"{self.freeze_backbone_epochs!r}"
            )
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(
                f"layer_decay must be in (0, 1] (1 disables it; 0.7-0.9 is usual), got "
                f"{self.layer_decay}"
            )
        if not isinstance(self.unfreeze_interval, int) or self.unfreeze_interval < 0:
            raise ConfigError(
                f"unfreeze_interval must be an integer >= 0, got {self.unfreeze_interval!r}"
            )


@dataclass(frozen=True)
class RecipeConfig:
    """Regularisation and initialisation of the training recipe (``--model.recipe.*``).

    Args:
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: batch MixUp (torchvision v2); 0 disables.
        cutmix_alpha: batch CutMix (torchvision v2); 0 disables.
        whiten_stem: before the first step of a new run, set the first convolution's filters to
            the patch-whitening transform of training images (airbench's data-dependent
            initialisation; :func:`resnet_pl.models.init.whiten_conv_`).
    """

    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    whiten_stem: bool = False

    def check(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ConfigError("mixup_alpha and cutmix_alpha must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    """Which weights and views evaluation uses (``--model.evaluation.*``).

    Args:
        ema_decay: keep an exponential moving average of the weights (and BN statistics) with
            this decay, warmed up over the first steps (:class:`resnet_pl.lightning.ema.EMA`);
            validation, checkpoints and everything that reads them (test, classify, export,
            hub) use the average. ``0`` disables.
        ema_every_n_steps: update the average every N optimizer steps.
        tta: test-time augmentation for validate/test/predict: ``none``, ``flip`` (2 views),
            ``shift`` (3), ``flip_shift`` (6); recorded in checkpoints so ``resnet-pl test``,
            ``classify`` and ``hub verify`` use the same views (:mod:`resnet_pl.models.tta`).
    """

    ema_decay: float = 0.0
    ema_every_n_steps: int = 1
    tta: TTAMode = "none"

    def check(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(
                f"ema_decay must be in [0, 1) (0 disables the average), got {self.ema_decay}"
            )
        if not isinstance(self.ema_every_n_steps, int) or self.ema_every_n_steps < 1:
            raise ConfigError(
                f"ema_every_n_steps must be a positive integer, got {self.ema_every_n_steps!r}"
            )
        try:
            check_mode(self.tta)
        except ValueError as err:
            raise ConfigError(str(err)) from None


@dataclass(frozen=True)
class DataInfo:
    """What the model was trained on (``--model.data_info.*``): filled from the data module
    when not given, saved in checkpoints so exports, ``classify`` and the hub pre-process and
    label as evaluation did.

    Args:
        dataset: the dataset's name.
        class_names: one name per class.
        mean: per-channel normalisation mean, in [0, 1] pixel units.
        std: per-channel normalisation standard deviation.
        input_size: ``[C, H, W]`` the model sees.
        crop_pct: evaluation resize-then-centre-crop ratio.
    """

    dataset: str | None = None
    class_names: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    input_size: list[int] | None = None
    crop_pct: float | None = None

    def check(self) -> None:
        if self.crop_pct is not None and not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")


@dataclass(frozen=True)
class DistillConfig:
    """The distillation loss of :class:`~resnet_pl.lightning.distill.DistillationClassifier`
    (``--model.distill.*``).

    Args:
        temperature: ``T`` of the softened distributions (> 0).
        alpha: weight of the KD term; ``1 - alpha`` weighs the cross-entropy (in [0, 1]).
        feature_weight: weight of the feature loss (0: logit distillation only).
        feature_stage: 1-based stage whose output is matched (student and teacher); None: the
            last stage.
        kd_loss: ``"kl"`` (classic KD, KL x T^2) or ``"dkd"`` (decoupled KD: target and
            non-target parts weighted by ``dkd_alpha`` and ``dkd_beta``); see
            :mod:`resnet_pl.lightning.kd_losses`.
        logit_standardization: z-score student and teacher logits (each row) before the
            softened softmax (Sun et al. 2024); ``temperature`` then applies to z-scores.
        dkd_alpha, dkd_beta: DKD's weights of the target-class (TCKD) and non-target (NCKD)
            terms (mdistiller's defaults 1 and 8).
        kd_warmup_epochs: the KD share ramps linearly from 0 to ``alpha`` over this many epochs
            (fractional allowed; counted in optimizer steps), the cross-entropy taking the
            rest, so the first steps learn from the labels alone. DKD's large ``dkd_beta``
            term is unstable on a random student without it (mdistiller ramps DKD over 20 of
            240 epochs). 0: the full mix from the first step.
    """

    temperature: float = 4.0
    alpha: float = 0.9
    feature_weight: float = 0.0
    feature_stage: int | None = None
    kd_loss: Literal["kl", "dkd"] = "kl"
    logit_standardization: bool = False
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    kd_warmup_epochs: float = 0.0

    def check(self) -> None:
        if not (self.kd_warmup_epochs >= 0 and math.isfinite(self.kd_warmup_epochs)):
            raise ConfigError(
                f"kd_warmup_epochs must be a finite number >= 0 (epochs of the KD ramp), got "
                f"{self.kd_warmup_epochs}"
            )
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"alpha must be in [0, 1] (the KD share of the loss), got {self.alpha}"
            )
        if not (self.feature_weight >= 0 and math.isfinite(self.feature_weight)):
            raise ConfigError(
                f"feature_weight must be a finite number >= 0, got {self.feature_weight}"
            )
        if self.kd_loss not in ("kl", "dkd"):
            raise ConfigError(f"kd_loss must be 'kl' or 'dkd', got {self.kd_loss!r}")
        for name in ("dkd_alpha", "dkd_beta"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")


# The groups of ResNetClassifier, in the order of its signature; subclasses extend the mapping
# (``HPARAM_GROUPS`` class attribute).
CLASSIFIER_GROUPS: dict[str, type] = {
    "optim": OptimConfig,
    "finetune": FinetuneConfig,
    "recipe": RecipeConfig,
    "evaluation": EvalConfig,
    "data_info": DataInfo,
}
# Every group any resnet-pl module has (the checkpoint reader and the CLI shim migrate with it;
# a test checks no field name occurs in two groups, which would make old flat names ambiguous).
ALL_GROUPS: dict[str, type] = {**CLASSIFIER_GROUPS, "distill": DistillConfig}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def legacy_names(groups: Mapping[str, type]) -> dict[str, str]:
    """``{old flat name: group}``: before the grouping each field was a top-level argument."""
    return {name: group for group, cls in groups.items() for name in field_names(cls)}


def group_dict(value: Any, cls: type, group: str) -> dict[str, Any]:
    """A group as the plain dict stored in hyperparameters: from ``None`` (the defaults), an
    instance, or a mapping (missing fields take their defaults). Unknown keys and bad values
    raise :class:`ConfigError` naming them."""
    if value is None:
        obj = cls()
    elif isinstance(value, cls):
        obj = value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        obj = _from_mapping(dataclasses.asdict(value), cls, group)
    elif isinstance(value, Mapping):
        obj = _from_mapping(value, cls, group)
    else:
        raise ConfigError(
            f"{group} must be a {cls.__name__} or a mapping of its options, got {value!r}"
        )
    obj.check()
    return _plain(dataclasses.asdict(obj))


def _from_mapping(value: Mapping[str, Any], cls: type, group: str) -> Any:
    known = field_names(cls)
    unknown = [k for k in value if k not in known]
    if unknown:
        import difflib

        hints = [
            f"{k} (did you mean {group}.{close[0]}?)"
            if (close := difflib.get_close_matches(k, known, n=1))
            else k
            for k in unknown
        ]
        raise ConfigError(
            f"unknown {group} option(s): {', '.join(hints)}; {group} takes {', '.join(known)}"
        )
    return cls(**dict(value))


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: what YAML and ``weights_only`` loading give back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def migrate_flat(
    hparams: Mapping[str, Any], groups: Mapping[str, type] = ALL_GROUPS
) -> tuple[dict[str, Any], list[str]]:
    """Old flat hyperparameters into their groups: ``{"lr": 0.2, "optim": {...}}`` ->
    ``{"optim": {..., "lr": 0.2}}``. Returns the new mapping and the old names it moved (empty
    for hyperparameters already grouped). A flat value wins over the same field in a group.
    Groups stay mappings (they are not completed with defaults here)."""
    moved: list[str] = []
    out = dict(hparams)
    names = legacy_names(groups)
    for key in list(out):
        group = names.get(key)
        if group is None or key in groups:
            continue
        value = out.pop(key)
        current = out.get(group)
        if current is None:
            current = {}
        elif dataclasses.is_dataclass(current) and not isinstance(current, type):
            current = dataclasses.asdict(current)
        out[group] = {**dict(current), key: value}
        moved.append(key)
    return out, moved


def new_name(old: str, groups: Mapping[str, type] = ALL_GROUPS) -> str | None:
    """``"lr"`` -> ``"optim.lr"``; None when ``old`` is not a flat name of before."""
    group = legacy_names(groups).get(old)
    return f"{group}.{old}" if group else None
