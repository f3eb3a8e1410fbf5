"""``DistillationClassifier``: train a student ``ResNetClassifier`` against a frozen teacher.

Knowledge distillation (Hinton et al. 2015, https://arxiv.org/abs/1503.02531) with an optional
FitNets-style feature hint (Romero et al. 2014, https://arxiv.org/abs/1412.6550). The design
follows timm's ``timm/task/distillation.py`` (a teacher wrapper that re-normalises the student's
batch for itself; a KL x T^2 logit loss; a projected feature loss), as a Lightning module:

- the teacher is a registry name with weights (``"resnet20.fashion_mnist"``), a resnet-pl
  Lightning checkpoint, or a list of them (an ensemble: logits averaged). It is read with the
  project's safe loaders (sha256-checked weights, ``torch.load(weights_only=True)``), frozen,
  always in eval mode and run without gradients;
- the teacher is **not a registered submodule**: it never appears in ``state_dict()``,
  ``parameters()``, the optimizer or the model summary, so checkpoints, ``resnet-pl hub
  publish`` and ONNX export only ever see the student. It still follows ``.to()`` / ``.cuda()``
  / dtype casts, because :meth:`DistillationClassifier._apply` forwards them;
- the checkpoint records each teacher's source and sha256 (hyperparameter ``teacher_sha256``),
  so ``load_from_checkpoint`` and ``--ckpt_path`` resume rebuild the same teacher and refuse,
  with one clear message, a teacher file that changed.

Loss options are one group, :class:`~resnet_pl.lightning.hparams.DistillConfig`
(``--model.distill.temperature`` ...). Loss: ``alpha * KD + (1 - alpha) * CE(s, y)`` with
``KD`` one of (``kd_loss``, :mod:`resnet_pl.lightning.kd_losses`): ``"kl"``,
``T^2 * KL(softmax(t / T) || softmax(s / T))``; ``"dkd"``, decoupled KD
``T^2 * (dkd_alpha * TCKD + dkd_beta * NCKD)``; either on z-scored logits with
``logit_standardization=True``. With ``kd_warmup_epochs`` the KD share ramps from 0 to ``alpha``
over the first epochs (:meth:`DistillationClassifier.kd_share`). Plus
``feature_weight * MSE(proj(s_k), t_k)`` on stage ``k`` when ``feature_weight > 0``, where
``proj`` is a learned 1x1 convolution (trained, saved in the Lightning checkpoint for exact
resume, never part of ``self.model`` and so never exported).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_pl.lightning import kd_losses
from resnet_pl.lightning.errors import ConfigError
from resnet_pl.lightning.hparams import CLASSIFIER_GROUPS, DistillConfig
from resnet_pl.lightning.module import ResNetClassifier

if TYPE_CHECKING:
    from lightning.fabric.utilities.data import AttributeDict
    from typing_extensions import Self


class TeacherMismatchError(ConfigError):
    """The teacher found now is not the one a checkpoint was trained with (its sha256 differs)."""


# --------------------------------------------------------------------------------------------
# The teacher
# --------------------------------------------------------------------------------------------
class Teacher(nn.Module):
    """One frozen teacher network and the preprocessing it was trained with.

    Args:
        model: the network (put in eval mode and frozen here).
        mean, std: its normalisation, in [0, 1] pixel units.
        input_size: ``(C, H, W)`` it expects.
        source: what the user named (registry name or checkpoint path), for messages.
        sha256: digest of the file its weights came from.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: Sequence[int],
        source: str,
        sha256: str,
    ) -> None:
        super().__init__()
        self.model = model
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.input_size = tuple(int(v) for v in input_size)
        self.source = source
        self.sha256 = sha256
        self.tap: FeatureTap | None = None
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.train(False)

    @property
    def num_classes(self) -> int:
        return int(getattr(self.model, "num_classes", -1))

    def train(self, mode: bool = True) -> Teacher:
        """Always eval mode: BatchNorm running statistics are the teacher's, and they must not
        drift towards the student's batches (nor dropout/stochastic depth change its output)."""
        return super().train(False)

    def capture_stage(self, stage: int) -> int:
        """Keep the output of stage ``stage`` (1-based) of each forward in ``self.tap``;
        returns that stage's channel count."""
        name, channels = _stage(self.model, stage, f"teacher {self.source}")
        self.tap = FeatureTap(training_only=False)
        self.model.get_submodule(name).register_forward_hook(self.tap)
        return channels

    def prepare(self, x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
        """The student's normalised batch ``x`` as this teacher's own eval transform would have
        made it: un-normalise with the student's ``mean``/``std``, resize to the teacher's input
        size (bilinear, antialiased, as the data pipeline resizes), copy a gray channel to the
        teacher's channels, normalise with the teacher's statistics. Unchanged when they agree."""
        c, h, w = self.input_size
        same_norm = len(mean) == len(self.mean) and all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
            for a, b in zip((*mean, *std), (*self.mean, *self.std), strict=True)
        )
        if same_norm and x.shape[1] == c and tuple(x.shape[-2:]) == (h, w):
            return x
        pixels = x.float() * _column(std, x) + _column(mean, x)
        if tuple(pixels.shape[-2:]) != (h, w):
            pixels = F.interpolate(
                pixels, size=(h, w), mode="bilinear", align_corners=False, antialias=True
            )
        if pixels.shape[1] != c:
            # Checked at construction: only a gray student batch for a colour teacher.
            pixels = pixels.expand(-1, c, -1, -1)
        return (pixels - _column(self.mean, pixels)) / _column(self.std, pixels)

    def forward(self, x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
        """Teacher logits (float32) for the student's normalised batch ``x``."""
        if self.model.training:  # a user may have called teacher.model.train() directly
            self.model.eval()
        with torch.no_grad():
            return self.model(self.prepare(x, mean, std)).float()


class FeatureTap:
    """A forward hook that keeps its module's last output (``training_only``: only from a
    training forward with gradients, so eval and export passes keep nothing). A small object
    rather than a bound method of the Lightning module, so copying the hooked network (EMA,
    export) does not copy the module and its teachers along with it."""

    def __init__(self, *, training_only: bool) -> None:
        self.training_only = training_only
        self.output: Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        if not self.training_only or (module.training and torch.is_grad_enabled()):
            self.output = output

    def pop(self) -> Tensor | None:
        output, self.output = self.output, None
        return output


def _column(values: Sequence[float], like: Tensor) -> Tensor:
    return torch.tensor(values, device=like.device, dtype=torch.float32).view(1, -1, 1, 1)


def _stage(model: nn.Module, stage: int, what: str) -> tuple[str, int]:
    """``(module name, channels)`` of 1-based stage ``stage`` of a registry ResNet."""
    names = getattr(model, "stage_names", None)
    info = getattr(model, "feature_info", None)
    if not names or not info:
        raise ConfigError(
            f"{what} has no stages (stage_names/feature_info): feature distillation needs a "
            f"registry ResNet; set feature_weight 0"
        )
    if not 1 <= stage <= len(names):
        raise ConfigError(
            f"feature_stage {stage} is not a stage of {what} (stages 1..{len(names)}); use a "
            f"1-based stage number or leave it unset for the last stage"
        )
    return names[stage - 1], int(info[stage - 1]["num_chs"])


def load_teacher(source: str, *, expected_sha256: str | None = None) -> Teacher:
    """A frozen :class:`Teacher` from a registry name with weights or a Lightning checkpoint.

    The file's sha256 is computed before it is read as weights; when ``expected_sha256`` is
    given (a resumed run) a different digest raises :class:`TeacherMismatchError` and the file
    is not loaded.
    """
    from resnet_pl.hub.files import sha256_file

    text = str(source)
    path = Path(text)
    if text.endswith((".ckpt", ".pt", ".pth")) or path.is_file():
        if not path.is_file():
            raise ConfigError(f"teacher checkpoint {path} not found (or is not a file)")
        digest = sha256_file(path)
        _check_digest(text, digest, expected_sha256)
        return _checkpoint_teacher(path, digest)
    return _registry_teacher(text, expected_sha256)


def _check_digest(source: str, digest: str, expected: str | None) -> None:
    if expected is not None and digest != expected:
        raise TeacherMismatchError(
            f"teacher {source} has sha256 {digest}, but this run was trained with sha256 "
            f"{expected}: the teacher file changed. Restore the original file to resume, or "
            f"start a new run (no --ckpt_path) to distil from the new teacher"
        )


def _checkpoint_teacher(path: Path, digest: str) -> Teacher:
    from resnet_pl.data.specs import recorded_preprocessing
    from resnet_pl.hub.checkpoint import CheckpointError, build_model, read_checkpoint
    from resnet_pl.models.registry import get_default_cfg

    try:
        ck = read_checkpoint(path)
        model = build_model(ck).eval()
    except CheckpointError as err:
        raise ConfigError(f"teacher: {err}") from None
    in_chans = int(getattr(model, "in_chans", ck.in_chans))
    side = int(get_default_cfg(ck.arch)["input_size"][1])
    mean, std, size = recorded_preprocessing(ck.hparams, in_chans, default_side=side)
    if mean is None or std is None:
        raise ConfigError(
            f"teacher checkpoint {path} records no mean/std and no known dataset, so its "
            f"inputs cannot be prepared; train it with ImageDataModule or pass mean/std"
        )
    return Teacher(model, mean=mean, std=std, input_size=size, source=str(path), sha256=digest)


def _registry_teacher(name: str, expected: str | None) -> Teacher:
    from resnet_pl.factory import create_model
    from resnet_pl.hub.files import resolve_file, sha256_file
    from resnet_pl.hub.weights import get_weights
    from resnet_pl.models.registry import split_name

    arch, tag = split_name(name)
    if tag is None:
        raise ConfigError(
            f"teacher {name!r} names an architecture without weights; name trained weights "
            f"('arch.tag', see resnet_pl.list_pretrained()) or a Lightning checkpoint path"
        )
    entry = get_weights(arch, tag)
    # resolve_file verifies the file against the record; the digest is checked against the
    # run's record before the weights are read.
    digest = sha256_file(resolve_file(entry))
    _check_digest(name, digest, expected)
    model = create_model(name, pretrained=True)
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    return Teacher(
        model,
        mean=cfg["mean"],
        std=cfg["std"],
        input_size=cfg["input_size"],
        source=name,
        sha256=digest,
    )


# --------------------------------------------------------------------------------------------
# The Lightning module
# --------------------------------------------------------------------------------------------
class DistillationClassifier(ResNetClassifier):
    """A :class:`ResNetClassifier` (the student) trained against a frozen teacher.

    Every argument of :class:`ResNetClassifier` applies to the student; in addition:

    Args:
        teacher: registry name with weights (``"resnet20.fashion_mnist"``), a resnet-pl
            Lightning checkpoint path, or a list of them (an ensemble: logits averaged).
        distill: the loss: ``temperature``, ``alpha``, ``feature_weight``, ``feature_stage``
            (:class:`~resnet_pl.lightning.hparams.DistillConfig`).
        teacher_sha256: the teachers' file digests. Filled in when the teachers load and saved
            in checkpoints; a resumed run passes them back, and a teacher whose file no longer
            matches is refused. Leave unset for a new run.

    The student sees the batch as the data module prepared it; each teacher sees the same
    augmented (and mixed) batch re-normalised to its own mean/std/input size. Logged besides
    ``train_loss``: ``train_kd_loss``, ``train_ce_loss`` and (with features)
    ``train_feature_loss``.
    """

    HPARAM_GROUPS: ClassVar[dict[str, type]] = {**CLASSIFIER_GROUPS, "distill": DistillConfig}

    def __init__(
        self,
        *args: Any,
        teacher: str | list[str] = "resnet20.fashion_mnist",
        distill: DistillConfig = DistillConfig(),  # noqa: B008 (frozen)
        teacher_sha256: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        _check_kd_options(teacher, teacher_sha256)
        super().__init__(*args, **kwargs)  # checks the distill group too
        loss = self.hparams["distill"]
        sources = [teacher] if isinstance(teacher, str) else [str(t) for t in teacher]
        expected = list(teacher_sha256) if teacher_sha256 else [None] * len(sources)
        members = [
            load_teacher(s, expected_sha256=d) for s, d in zip(sources, expected, strict=True)
        ]
        self._check_teachers(members)
        # Outside the module tree on purpose (see the module docstring): assigned through
        # __dict__ so nn.Module does not register it as a child.
        self.__dict__["_teachers"] = nn.ModuleList(members).eval()
        digests = [m.sha256 for m in members]
        # Set by save_hyperparameters(); nn.Module.__getattr__ types undeclared attributes as
        # Tensor | Module.
        initial = cast("AttributeDict", self._hparams_initial)
        for store in (self.hparams, initial):
            store["teacher_sha256"] = digests
        self.feature_proj: nn.ModuleList | None = None
        self._student_tap = FeatureTap(training_only=True)
        self._batch_input: Tensor | None = None
        if loss["feature_weight"] > 0:
            self._setup_feature_loss(members, loss["feature_stage"])

    # ---- setup ------------------------------------------------------------------------------
    @property
    def teachers(self) -> nn.ModuleList:
        """The frozen teachers (not part of ``state_dict`` or ``parameters()``)."""
        return self.__dict__["_teachers"]

    def _teacher_list(self) -> list[Teacher]:
        """:attr:`teachers` as ``Teacher`` objects (a ``ModuleList`` iterates as plain modules)."""
        members = [t for t in self.teachers if isinstance(t, Teacher)]
        assert len(members) == len(self.teachers)  # it holds nothing but Teacher modules
        return members

    def _check_teachers(self, members: list[Teacher]) -> None:
        n, c = self.hparams["num_classes"], self.hparams["in_chans"]
        for t in members:
            if t.num_classes != n:
                raise ConfigError(
                    f"teacher {t.source} has {t.num_classes} classes but the student has "
                    f"num_classes={n}; distil from a teacher trained on the same classes"
                )
            if t.input_size[0] != c and c != 1:
                raise ConfigError(
                    f"teacher {t.source} takes {t.input_size[0]}-channel images but the "
                    f"student has in_chans={c}; only a gray student can feed a colour teacher"
                )

    def _setup_feature_loss(self, members: list[Teacher], stage: int | None) -> None:
        n_stages = len(getattr(self.model, "stage_names", []) or [])
        k = stage if stage is not None else n_stages
        name, c_student = _stage(self.model, k, f"student {self.hparams['arch']}")
        # Each teacher's own last stage when unset: teachers may have other depths.
        c_teachers = [
            t.capture_stage(stage if stage is not None else len(t.model.stage_names))  # type: ignore[arg-type]
            for t in members
        ]
        self.feature_proj = nn.ModuleList(
            nn.Conv2d(c_student, c_t, kernel_size=1, bias=True) for c_t in c_teachers
        )
        self.model.get_submodule(name).register_forward_hook(self._student_tap)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Device and dtype moves (``.to``, ``.cuda``, ``.half`` all end here) also move the
        teachers, which are outside the module tree."""
        super()._apply(fn, *args, **kwargs)
        teachers = self.__dict__.get("_teachers")
        if teachers is not None:
            teachers._apply(fn)
        return self

    def unfreeze(self) -> Self:
        super().unfreeze()
        for p in self.teachers.parameters():
            p.requires_grad_(False)
        return self

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The student's groups, plus the feature projections at the full learning rate (weight
        decay on their kernels, not their biases). The teachers are never included."""
        groups = super().parameter_groups()
        if self.feature_proj is not None:
            params = list(self.feature_proj.parameters())
            lr, wd = self.hparams["optim"]["lr"], self.hparams["optim"]["weight_decay"]
            kernels = [p for p in params if p.ndim > 1]
            biases = [p for p in params if p.ndim <= 1]
            groups.append({"params": kernels, "weight_decay": wd, "lr": lr})
            groups.append({"params": biases, "weight_decay": 0.0, "lr": lr})
        return groups

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.__dict__["_kd_ramp_steps"] = None  # kd_share() measures this fit's ramp again
        info = self.hparams["data_info"]
        if info["mean"] is None or info["std"] is None:
            raise ConfigError(
                "DistillationClassifier needs the student's mean/std to prepare the teacher's "
                "inputs: train with ImageDataModule (it records them) or pass mean=... std=..."
            )
        if self.hparams["channels_last"]:
            self.teachers.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    # ---- the loss ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        # The parent's training_step mixes the batch and calls self(x); keeping that input lets
        # compute_loss show the teachers exactly the batch the student saw.
        if self.training and torch.is_grad_enabled():
            self._batch_input = x
        return super().forward(x)

    def teacher_logits(self, x: Tensor) -> Tensor:
        """The teachers' averaged float32 logits for the student's normalised batch ``x``."""
        mean, std = self._student_stats(x)
        logits = [t(x, mean, std) for t in self.teachers]
        return torch.stack(logits).mean(0) if len(logits) > 1 else logits[0]

    def _student_stats(self, x: Tensor) -> tuple[Sequence[float], Sequence[float]]:
        mean, std = self.hparams["data_info"]["mean"], self.hparams["data_info"]["std"]
        if mean is None or std is None:
            raise ConfigError(
                "the student's mean/std are unknown: pass mean=... std=... (or use "
                "ImageDataModule) so the teacher's inputs can be prepared"
            )
        return mean, std

    def distillation_loss(
        self, student_logits: Tensor, teacher_logits: Tensor, targets: Tensor
    ) -> dict[str, Tensor]:
        """``{"loss", "kd", "ce"}``: ``kd`` the chosen KD loss (``distill.kd_loss``,
        ``distill.logit_standardization``; mean over the batch), ``ce`` the student's criterion
        (label smoothing, soft mixed targets), ``loss = alpha * kd + (1 - alpha) * ce``.
        Computed in float32 under autocast. DKD with soft (mixed) targets takes each row's
        largest share as its target class."""
        hp = self.hparams["distill"]
        t, a = hp["temperature"], self.kd_share()
        s = student_logits.float()
        stand = bool(hp.get("logit_standardization", False))
        if hp.get("kd_loss", "kl") == "dkd":
            hard = targets.argmax(dim=1) if targets.ndim == 2 else targets
            kd = kd_losses.dkd(
                s, teacher_logits, hard, t,
                alpha=hp.get("dkd_alpha", 1.0), beta=hp.get("dkd_beta", 8.0), standardize=stand,
            )  # fmt: skip
        else:
            kd = kd_losses.kl_kd(s, teacher_logits, t, standardize=stand)
        ce = self.criterion(s, targets)
        return {"loss": a * kd + (1 - a) * ce, "kd": kd, "ce": ce}

    def kd_share(self) -> float:
        """The KD weight ``alpha`` of the current step: ``alpha * min(1, step / ramp)`` while
        training with ``kd_warmup_epochs`` > 0 (``ramp``: that many epochs of optimizer steps),
        else ``alpha``. A function of ``global_step`` only, so a resumed run continues the same
        ramp."""
        hp = self.hparams["distill"]
        alpha, warm = float(hp["alpha"]), float(hp.get("kd_warmup_epochs", 0.0))
        if warm <= 0 or self._trainer is None or not self.trainer.training:
            return alpha
        ramp = self.__dict__.get("_kd_ramp_steps")
        if ramp is None:
            batches = float(self.trainer.num_training_batches)
            if not math.isfinite(batches):  # an iterable dataset of unknown length
                epochs = self.trainer.max_epochs or -1
                if epochs <= 0:
                    raise ConfigError(
                        "kd_warmup_epochs needs epochs of known length: give the dataset a "
                        "length, set trainer.max_epochs, or set kd_warmup_epochs 0"
                    )
                per_epoch = float(self.trainer.estimated_stepping_batches) / epochs
            else:
                per_epoch = batches / max(int(self.trainer.accumulate_grad_batches), 1)
            ramp = self.__dict__["_kd_ramp_steps"] = max(warm * per_epoch, 1.0)
        return alpha * min(1.0, self.trainer.global_step / ramp)

    def feature_loss(self) -> Tensor:
        """Mean over teachers of ``MSE(proj(student stage), teacher stage)``; the teacher's map
        is resized to the student's when their resolutions differ."""
        s = self._student_tap.pop()
        if s is None or self.feature_proj is None:
            raise RuntimeError("no student feature was kept: call self(x) in training mode first")
        losses = []
        for proj, teacher in zip(self.feature_proj, self._teacher_list(), strict=True):
            target = teacher.tap.pop() if teacher.tap is not None else None
            if target is None:
                raise RuntimeError(f"teacher {teacher.source} kept no feature map")
            target = target.float()
            if target.shape[-2:] != s.shape[-2:]:
                target = F.interpolate(
                    target, size=s.shape[-2:], mode="bilinear", align_corners=False,
                    antialias=target.shape[-1] > s.shape[-1],
                )  # fmt: skip
            losses.append(F.mse_loss(proj(s).float(), target))
        return torch.stack(losses).mean()

    def compute_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """KD + CE (+ feature) loss of the training batch whose logits these are."""
        x = self._batch_input
        self._batch_input = None
        if x is None or x.shape[0] != logits.shape[0]:
            raise RuntimeError(
                "DistillationClassifier.compute_loss needs the batch these logits came from: "
                "call self(x) in training mode first, or use distillation_loss(student_logits, "
                "teacher_logits, targets)"
            )
        parts = self.distillation_loss(logits, self.teacher_logits(x), targets)
        loss = parts["loss"]
        logged = {"train_kd_loss": parts["kd"], "train_ce_loss": parts["ce"]}
        if self.feature_proj is not None:
            feat = self.feature_loss()
            loss = loss + self.hparams["distill"]["feature_weight"] * feat
            logged["train_feature_loss"] = feat
        if self._trainer is not None and self.trainer.training:
            self.log_dict(logged, on_step=True, on_epoch=True)
        return loss

    # ---- checkpoints ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Readable provenance besides the hyperparameters (plain values: weights_only-safe).
        checkpoint["distillation"] = {
            "teachers": [{"source": t.source, "sha256": t.sha256} for t in self.teachers],
            "temperature": self.hparams["distill"]["temperature"],
            "alpha": self.hparams["distill"]["alpha"],
            "feature_weight": self.hparams["distill"]["feature_weight"],
            "kd_loss": self.hparams["distill"].get("kd_loss", "kl"),
            "logit_standardization": self.hparams["distill"].get("logit_standardization", False),
            "kd_warmup_epochs": self.hparams["distill"].get("kd_warmup_epochs", 0.0),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint trained with other teachers than the ones loaded now (a model
        built in Python and given ``ckpt_path`` does not pass ``teacher_sha256`` itself)."""
        recorded = (checkpoint.get("hyper_parameters") or {}).get("teacher_sha256")
        teachers = self._teacher_list()
        current = [t.sha256 for t in teachers]
        if recorded is not None and list(recorded) != current:
            sources = ", ".join(t.source for t in teachers)
            raise TeacherMismatchError(
                f"the checkpoint was trained with teachers of sha256 {list(recorded)}, but the "
                f"teachers loaded now ({sources}) have {current}: restore the original teacher "
                f"files, or start a new run"
            )
        super().on_load_checkpoint(checkpoint)


def _check_kd_options(teacher: Any, teacher_sha256: Any) -> None:
    """Bad distillation options fail before any teacher is read."""
    if isinstance(teacher, str):
        n = 1
        if not teacher.strip():
            raise ConfigError("teacher is empty; name weights ('resnet20.fashion_mnist') or a file")
    elif isinstance(teacher, list | tuple) and teacher and all(isinstance(t, str) for t in teacher):
        n = len(teacher)
    else:
        raise ConfigError(
            f"teacher must be a weights name, a checkpoint path or a non-empty list of them, "
            f"got {teacher!r}"
        )
    if teacher_sha256 is not None and len(teacher_sha256) != n:
        raise TeacherMismatchError(
            f"teacher_sha256 lists {len(teacher_sha256)} digests for {n} teacher(s): the "
            f"teachers differ from the checkpoint's; start a new run or name the same teachers"
        )
