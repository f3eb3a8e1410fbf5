"""``resnet-pl fit|validate|test|predict``: training and evaluation through LightningCLI.

Every option comes from the signatures of :class:`~resnet_pl.lightning.module.ResNetClassifier`,
:class:`~resnet_pl.lightning.data.ImageDataModule` and Lightning's ``Trainer``
(``resnet-pl fit --help``); ``--config configs/fashion_mnist_resnet20.yaml`` reads a YAML file.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from resnet_pl.cli import EXIT_INTERRUPTED
from resnet_pl.errors import ResNetPLError
from resnet_pl.fileio import WRITE_ERRNOS, WriteError
from resnet_pl.lightning import runs
from resnet_pl.lightning.callbacks import PlotCallback, PredictionWriter
from resnet_pl.lightning.checkpointing import (
    AtomicCheckpointIO,
    BestAndLastCheckpoint,
    ExactResumeCallback,
    StepCheckpoint,
)
from resnet_pl.lightning.data import ImageDataModule
from resnet_pl.lightning.distill import DistillationClassifier  # noqa: F401 (--model short name)
from resnet_pl.lightning.errors import (
    ConfigError,
    NonFiniteLossError,
    UntrustedCheckpointError,
    checkpoint_load_error,
)
from resnet_pl.lightning.interrupt import GracefulInterrupt, TrainingInterrupted
from resnet_pl.lightning.loggers import (
    AtomicSaveConfigCallback,
)
from resnet_pl.lightning.module import ResNetClassifier
from resnet_pl.lightning.validate import check_checkpoint_sizes
from resnet_pl.limits import printable


class ResNetCLI(LightningCLI):
    """LightningCLI with resnet-pl's defaults: the data's class count and channels linked to the
    model, best + last + mid-epoch checkpoints written atomically, exact resume with
    ``--ckpt_path last``, ``--ckpt_path`` files read with ``weights_only=True`` unless
    ``--weights_only false``, unwritable run folders refused up front, CSV and TensorBoard logs
    in one run folder, a rich progress bar and PNG plots."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Subclass mode (only when a command names a model class, see ``names_model_class``):
        # ``--model DistillationClassifier`` or ``class_path`` in a YAML picks another
        # ResNetClassifier subclass. Otherwise the model's options are plain ``--model.X``.
        target = "model."
        if self.subclass_mode_model:
            model_class = self._model_class
            assert isinstance(model_class, type)  # cli_main passes a class, never a factory
            parser.set_defaults({"model": {"class_path": _class_path(model_class)}})
            target = "model.init_args."
        parser.link_arguments("data.num_classes", f"{target}num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", f"{target}in_chans", apply_on="instantiate")
        parser.add_argument(
            "--run_name",
            type=str,
            default="resnet_pl",
            help="name of the run: its logs and checkpoints go to ROOT/RUN_NAME/version_N/",
        )
        parser.add_argument(
            "--run_root",
            type=str,
            default="runs",
            help="ROOT when --trainer.default_root_dir is not given",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=200,
            help="also save last_step.ckpt every N optimizer steps (0: only at validation)",
        )
        parser.add_argument(
            "--recipe",
            type=Literal["off", "auto"],
            default="off",
            help="auto: choose the fine-tuning options you leave unset from the image folder "
            "and the starting weights, and print the choices (configs/finetune.yaml)",
        )
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "best-epoch{epoch:03d}-val_acc{val_acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def _run_config(self) -> tuple[Any, Path, str]:
        """This subcommand's configuration, its run folder and the option that chose it:
        ``--trainer.default_root_dir/--run_name`` when a root is given, else
        ``--run_root/--run_name`` (default ``runs/<run_name>``)."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg["trainer"].get("default_root_dir")
        if root is not None:
            return cfg, Path(root) / cfg["run_name"], "--trainer.default_root_dir/--run_name"
        return cfg, Path(cfg["run_root"]) / cfg["run_name"], "--run_root/--run_name"

    def _choose_version(self, cfg: Any, run_dir: Path) -> tuple[Path, int | None]:
        """The run's version folder, and the step a resumed run continues from (None for a
        new run). ``fit`` resuming a checkpoint that lives in a version folder (``--ckpt_path
        last``, or a path ``.../version_N/checkpoints/x.ckpt``) continues in that folder;
        anything else gets a new one. ``--ckpt_path last`` is resolved here, to the file
        :func:`~resnet_pl.lightning.runs.latest_last_checkpoint` picks, and the choice is
        printed."""
        ckpt = cfg.get("ckpt_path")
        if runs._is_child_rank() and runs.CKPT_ENV in os.environ:
            ckpt = cfg["ckpt_path"] = os.environ[runs.CKPT_ENV] or None  # rank 0's choice
        elif ckpt == "last":
            found = runs.latest_last_checkpoint(run_dir)
            if found is None:
                print(
                    f"resnet-pl: --ckpt_path last: no last*.ckpt under "
                    f"{run_dir}/version_*/checkpoints; starting from scratch",
                    file=sys.stderr,
                )
            else:
                verb = "resuming" if self.subcommand == "fit" else "using"
                print(f"resnet-pl: --ckpt_path last: {verb} {found}", file=sys.stderr)
            ckpt = str(found) if found is not None else None
            cfg["ckpt_path"] = ckpt
        os.environ[runs.CKPT_ENV] = ckpt or ""
        version = runs.version_of(Path(ckpt)) if ckpt and "://" not in ckpt else None
        if self.subcommand == "fit" and version is not None and Path(ckpt).is_file():
            return runs.use_version(version), _global_step(Path(ckpt))
        return runs.reserve_version(run_dir), None

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads ``--ckpt_path``'s hyperparameters before anything else, always
        with ``weights_only=True``: a missing, torn or untrusted file then fails as one line
        here, and ``--weights_only false`` (a file the user trusts) skips that early read --
        the model is built from the command line and the trainer loads the file fully."""
        subcommand = self.config.get("subcommand")
        cfg = self.config[subcommand] if subcommand else {}
        path = cfg.get("ckpt_path")
        if path is None:
            return
        special = path in ("last", "best", "hpc", "registry") or "://" in str(path)
        if not special and not Path(path).is_file():
            raise ConfigError(f"--ckpt_path {path} does not exist (or is not a file)")
        from jsonargparse import ArgumentError

        # The classifier's sizes are checked against its weights before anything is built; a
        # dense task's checkpoint holds a backbone and heads, which that check does not describe.
        classifier = isinstance(self._model_class, type) and issubclass(
            self._model_class, ResNetClassifier
        )
        if not special and classifier and cfg.get("weights_only") is not False:
            check_checkpoint_sizes(Path(path), f"--ckpt_path {path}")
        try:
            self._parse_ckpt_hparams(path)
        except ArgumentError:  # the file loaded; its hyperparameters do not fit the options
            raise
        except Exception as err:  # torch.load of arbitrary bytes can raise almost anything
            error = checkpoint_load_error(path, err, "--weights_only false")
            if cfg.get("weights_only") is False and isinstance(error, UntrustedCheckpointError):
                return
            raise error from None

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # Kept for ``recipe: auto``, which must know the options the user set.
        self._argv = (
            list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        )
        super().parse_arguments(parser, args)

    def before_fit(self) -> None:
        """``--model.lr auto``: Lightning's learning-rate finder, before the run starts."""
        from resnet_pl.lightning.finetune import find_lr

        find_lr(self.trainer, self.model, self.datamodule)

    def _parse_ckpt_hparams(self, path: str) -> None:
        """LightningCLI's own reading of ``--ckpt_path``'s hyperparameters, with the flat
        hyperparameters of checkpoints from before the grouping moved into their groups."""
        import torch

        from resnet_pl.lightning.hparams import migrate_flat

        if not Path(path).is_file():
            return
        ckpt = torch.load(path, weights_only=True, map_location="cpu")
        hparams = dict(ckpt.get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if not _is_dense_task(hparams.get("_class_path")):  # dense tasks were never flat
            hparams, _ = migrate_flat(hparams)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        subcommand = self.config.subcommand
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def before_instantiate_classes(self) -> None:
        cfg, run_dir, option = self._run_config()
        # Fail now, not after an epoch, when logs or checkpoints cannot be written.
        _check_writable(run_dir, option)
        version_dir, self._resume_step = self._choose_version(cfg, run_dir)
        self._version_dir = version_dir
        if cfg.get("recipe") == "auto":
            from resnet_pl.lightning.recipe import apply_recipe

            # validate/test/predict: the same data decisions as fit (the model comes from
            # the checkpoint); only fit prints them.
            fit = self.subcommand in ("fit", None)  # None: cli_main(run=False) builds for fit
            block = apply_recipe(cfg, getattr(self, "_argv", []), version_dir, data_only=not fit)
            if fit and not runs._is_child_rank():
                print(block, file=sys.stderr)
        if cfg["checkpoint"]["dirpath"] is None:
            cfg["checkpoint"]["dirpath"] = str(version_dir / "checkpoints")
        if cfg["trainer"].get("default_root_dir") is None:
            # Anything Lightning writes on its own (profiles, tuner files) stays in the run.
            cfg["trainer"]["default_root_dir"] = str(version_dir)
        _check_writable(version_dir, option)
        if self.subcommand == "fit":
            _check_writable(Path(cfg["checkpoint"]["dirpath"]), "--checkpoint.dirpath")
        # Checkpoints given by --ckpt_path are read with the restricted unpickler unless the
        # user says otherwise (--weights_only false, for files from a trusted source).
        if "weights_only" in cfg and cfg["weights_only"] is None:
            cfg["weights_only"] = True

    def instantiate_classes(self) -> None:
        """Build model, data and trainer. In subclass mode jsonargparse wraps an error raised by
        the model's constructor in "Does not validate against any of the Union subtypes";
        unwrap one of ours so it stays the one-line message it was written as."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            cause: BaseException | None = err
            while cause is not None and not isinstance(cause, ResNetPLError):
                cause = cause.__cause__
            if cause is None or cause is err:
                raise
            raise cause from None

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        extra: list[Any] = [LearningRateMonitor(), PlotCallback(), PredictionWriter()]
        if cfg["trainer"].get("enable_progress_bar", True) is not False:
            extra.append(RichProgressBar())
        every = cfg["checkpoint_every_n_steps"]
        if self.subcommand == "fit":
            extra += [ExactResumeCallback(), GracefulInterrupt()]
            if every and every > 0:
                extra.append(StepCheckpoint(cfg["checkpoint"]["dirpath"], every))
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": extra}
        if cfg["trainer"].get("logger") in (None, True):
            kwargs["logger"] = runs.run_loggers(self._version_dir, self._resume_step)
        if not cfg["trainer"].get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        try:
            return super().instantiate_trainer(**kwargs)
        except MisconfigurationException as err:  # --trainer.max_epochs -5 and the like
            raise ConfigError(f"--trainer: {' '.join(str(err).split())}") from None


def names_model_class(argv: list[str]) -> bool:
    """Whether a command chooses the model class: ``--model NAME`` / ``--model=NAME``,
    ``--model.help NAME``, a ``--config`` whose ``model`` has a ``class_path``, or a
    ``--ckpt_path`` file trained with another class (LightningCLI records ``_class_path``).
    Only then does the CLI run in subclass mode; plain commands keep flat ``--model.X`` options,
    their help and their one-line errors exactly as before."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith(("--model=", "--model.help")):
            return True
        if arg == "--model" and value and not value.startswith("-"):
            return True
        if arg in ("--config", "-c") or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if "=" in arg else value
            if _config_names_class(Path(path)):
                return True
        if arg == "--ckpt_path" or arg.startswith("--ckpt_path="):
            path = arg.split("=", 1)[1] if "=" in arg else value
            if _checkpoint_names_class(Path(path)):
                return True
    return False


def _config_model(path: Path) -> Any:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # LightningCLI reports an unreadable config itself
    if isinstance(config, dict) and isinstance(config.get("fit"), dict) and "model" not in config:
        config = config["fit"]
    return config.get("model") if isinstance(config, dict) else None


def _config_names_class(path: Path) -> bool:
    model = _config_model(path)
    return isinstance(model, dict) and "class_path" in model


# Short names of the dense tasks (a config may also give the full import path).
DENSE_TASKS = {
    "SegmentationTask": "resnet_pl.lightning.segmentation.SegmentationTask",
    "DetectionTask": "resnet_pl.lightning.detection.DetectionTask",
}


def _is_dense_task(class_path: Any) -> bool:
    """Whether ``class_path`` names a :class:`~resnet_pl.lightning.dense.DenseTask` subclass."""
    if not isinstance(class_path, str) or not class_path:
        return False
    if class_path in DENSE_TASKS or class_path in DENSE_TASKS.values():
        return True
    import importlib

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return False
    from resnet_pl.lightning.dense import DenseTask

    return isinstance(cls, type) and issubclass(cls, DenseTask)


def names_dense_task(argv: list[str]) -> bool:
    """Whether a command trains or evaluates a dense task (segmentation, detection): a
    ``--config`` whose ``model.class_path`` names one, ``--model SegmentationTask`` /
    ``DetectionTask``, or a ``--ckpt_path`` written by one. The CLI then takes any
    ``DenseTask`` as the model and any LightningDataModule (``data: class_path: ...``)."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if arg.startswith("--model="):
            value, arg = arg.split("=", 1)[1], "--model"
        if arg == "--model" and _is_dense_task(value):
            return True
        if arg in ("--config", "-c") or arg.startswith("--config="):
            path = arg.split("=", 1)[1] if "=" in arg else value
            model = _config_model(Path(path))
            if isinstance(model, dict) and _is_dense_task(model.get("class_path")):
                return True
        if arg == "--ckpt_path" or arg.startswith("--ckpt_path="):
            path = arg.split("=", 1)[1] if "=" in arg else value
            if _is_dense_task(_checkpoint_class_path(Path(path))):
                return True
    return False


def _checkpoint_names_class(path: Path) -> bool:
    return _checkpoint_class_path(path) is not None


def _checkpoint_class_path(path: Path) -> str | None:
    if not path.is_file():
        return None
    import torch

    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        hp = ckpt.get("hyper_parameters") or {}
    except Exception:  # reported by ResNetCLI._parse_ckpt_path, one line
        return None
    return str(hp["_class_path"]) if isinstance(hp, dict) and "_class_path" in hp else None


# Sections of a --config file and the YAML types each may have (model: a class name too).
_CONFIG_SECTIONS: dict[str, tuple[type, ...]] = {
    "trainer": (dict,),
    "data": (dict,),
    "checkpoint": (dict,),
    "model": (dict, str),
}


def check_config_files(argv: list[str]) -> None:
    """Every ``--config FILE`` of a command, read before LightningCLI does: a binary or
    non-UTF-8 file, invalid YAML, an empty file, a file that is not a mapping, or a section
    of the wrong type (``model: [1, 2]``, ``trainer: 5``) fails as one line naming the file
    and the fix, instead of a traceback or a bare "Unexpected config:"."""
    import yaml

    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        else:
            continue
        path = Path(value)
        if not path.is_file():
            continue  # jsonargparse reports a missing file (or reads an inline YAML string)
        example = "e.g. `trainer: {max_epochs: 5}` (see configs/*.yaml)"
        where = f"--config {printable(path)}"
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as err:
            raise ConfigError(f"{where} cannot be read: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"{where} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                f"{err.start}); --config takes a YAML file, {example}"
            ) from None
        if "\x00" in text:
            raise ConfigError(f"{where} holds NUL bytes: it is a binary file, not YAML; {example}")
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"{where} is not valid YAML{at} ({problem})") from None
        if config is None:
            raise ConfigError(f"{where} is empty; write the options as a YAML mapping, {example}")
        if not isinstance(config, dict):
            raise ConfigError(
                f"{where} holds a YAML {type(config).__name__}, not a mapping of options; {example}"
            )
        scopes = [("", config)] + [
            (f"{name}.", config[name])
            for name in ("fit", "validate", "test", "predict")
            if isinstance(config.get(name), dict)
        ]
        for prefix, scope in scopes:
            for section, kinds in _CONFIG_SECTIONS.items():
                entry = scope.get(section)
                if entry is not None and not isinstance(entry, kinds):
                    names = ("a mapping" if k is dict else "a class name" for k in kinds)
                    wanted = " or ".join(names)
                    raise ConfigError(
                        f"{where}: `{prefix}{section}` must be {wanted} of options, got "
                        f"{printable(repr(entry), 60)}; {example}"
                    )


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_writable(folder: Path, option: str) -> None:
    """Create ``folder`` and write a scratch file in it, or raise :class:`ConfigError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"cannot write to {folder} ({reason}); choose a writable folder with {option}"
        ) from None


def _global_step(ckpt: Path) -> int | None:
    """The optimizer step a checkpoint was saved at (memory-mapped: nothing else is read)."""
    import torch

    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        return int(state.get("global_step", 0))
    except Exception:  # unreadable here: Lightning's own load reports it properly
        return None


# ---- the flat model options of before the grouping (``--model.lr`` -> ``--model.optim.lr``) ----
def _model_flag(arg: str) -> tuple[str, str, str] | None:
    """``(prefix, old name, rest)`` of a flat model flag of before the grouping
    (``--model.lr=0.1`` -> ``("--model.", "lr", "=0.1")``), else None."""
    from resnet_pl.lightning.hparams import new_name

    for prefix in ("--model.init_args.", "--model."):
        if arg.startswith(prefix):
            name, sep, value = arg[len(prefix) :].partition("=")
            if new_name(name) is not None:
                return prefix, name, sep + value
            return None
    return None


def migrate_argv(argv: list[str]) -> list[str]:
    """The command line with the flat model options of before the grouping renamed, one
    deprecation line each on stderr (``--model.lr`` -> ``--model.optim.lr``), and every
    ``--config`` file that uses them replaced by a migrated copy (one line per file)."""
    from resnet_pl.lightning.hparams import new_name

    out: list[str] = []
    for i, arg in enumerate(argv):
        flag = _model_flag(arg)
        if flag is not None:
            prefix, name, rest = flag
            new = f"{prefix}{new_name(name)}"
            print(
                f"resnet-pl: {prefix}{name} is deprecated; use {new} (the model options are "
                f"grouped: resnet-pl fit --help)",
                file=sys.stderr,
            )
            out.append(new + rest)
            continue
        previous = argv[i - 1] if i else ""
        if previous in ("--config", "-c") and not arg.startswith("-"):
            out.append(_migrated_config(arg))
        elif arg.startswith("--config="):
            out.append("--config=" + _migrated_config(arg.split("=", 1)[1]))
        else:
            out.append(arg)
    return out


def _migrated_config(path: str) -> str:
    """``path``, or a migrated copy of the YAML config when its ``model`` section uses flat
    option names of before the grouping."""
    import atexit
    import shutil

    import yaml

    from resnet_pl.lightning.hparams import migrate_flat

    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return path  # LightningCLI reports an unreadable config itself
    if not isinstance(config, dict):
        return path
    moved: list[str] = []
    sections = [config, *(v for k, v in config.items() if k in SUBCOMMANDS and isinstance(v, dict))]
    for section in sections:
        model = section.get("model")
        if not isinstance(model, dict):
            continue
        if isinstance(model.get("init_args"), dict):
            model["init_args"], names = migrate_flat(model["init_args"])
        else:
            section["model"], names = migrate_flat(model)
        moved += names
    if not moved:
        return path
    from resnet_pl.lightning.hparams import new_name

    renames = ", ".join(f"{k} -> {new_name(k)}" for k in dict.fromkeys(moved))
    print(
        f"resnet-pl: {path}: flat model options are deprecated; nest them in their group "
        f"({renames})",
        file=sys.stderr,
    )
    folder = tempfile.mkdtemp(prefix="resnet_pl_config_")
    atexit.register(shutil.rmtree, folder, True)
    copy = Path(folder) / Path(path).name
    copy.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return str(copy)


SUBCOMMANDS = ("fit", "validate", "test", "predict")


def cli_main(
    args: list[str] | None = None,
    *,
    model_class: type[L.LightningModule] = ResNetClassifier,
    datamodule_class: type[L.LightningDataModule] = ImageDataModule,
    run: bool = True,
    exit_on_error: bool = True,
) -> ResNetCLI:
    """Run the Lightning part of the CLI; tests and user projects call this with ``args``
    (and their own subclasses). ``model_class`` is the default model; any subclass of it
    (:class:`~resnet_pl.lightning.distill.DistillationClassifier` is imported, so its short name
    works) is chosen with ``--model NAME`` or ``model: class_path: ...`` in a config.
    ``exit_on_error=False`` raises ``jsonargparse.ArgumentError`` for a bad option instead of
    printing the usage and exiting. Flat model options of before the grouping
    (``--model.lr``, ``model: {lr: ...}`` in a config) are renamed with a deprecation line
    (:func:`migrate_argv`).

    A command that names a dense task (:func:`names_dense_task`: ``model: class_path:
    resnet_pl.lightning.segmentation.SegmentationTask`` in a config) runs with
    :class:`~resnet_pl.lightning.dense.DenseTask` as the model's base class and any
    LightningDataModule given by ``data: class_path: ...`` (its options are its own: no
    migration applies)."""
    argv = list(sys.argv[1:] if args is None else args)
    dense = model_class is ResNetClassifier and names_dense_task(argv)
    if dense:
        from resnet_pl.lightning.dense import DenseTask
        from resnet_pl.lightning.detection import DetectionTask  # noqa: F401 (short name)
        from resnet_pl.lightning.segmentation import SegmentationTask  # noqa: F401 (short name)

        model_class, datamodule_class = DenseTask, L.LightningDataModule
    else:
        argv = migrate_argv(argv)
    with warnings.catch_warnings():
        # The renamed args differ from sys.argv on purpose.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return _make_cli(argv, model_class, datamodule_class, run, exit_on_error, dense)


def _make_cli(
    args: list[str],
    model_class: type[L.LightningModule],
    datamodule_class: type[L.LightningDataModule],
    run: bool,
    exit_on_error: bool,
    dense: bool = False,
) -> ResNetCLI:
    return ResNetCLI(
        model_class,
        datamodule_class,
        args=args,  # type: ignore[arg-type]
        run=run,
        subclass_mode_data=dense,
        subclass_mode_model=dense or names_model_class(args),
        save_config_callback=AtomicSaveConfigCallback,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "resnet-pl", "exit_on_error": exit_on_error},
    )


def _interrupt_outside_training(signum: int, frame: Any) -> None:
    # Ctrl-C while no training step runs (setup, data loading, sanity check, evaluation):
    # nothing half-done needs saving; stop now, as a TrainingInterrupted so that Lightning
    # re-raises it instead of calling sys.exit(1).
    raise TrainingInterrupted("interrupted (Ctrl-C); no training step was in progress")


def lightning_main(argv: list[str]) -> int:
    """Run a Lightning subcommand. A bad option or one of our own errors becomes one line,
    ``resnet-pl: error: ...``, instead of a page of usage or a traceback: exit 2 for bad
    input, 1 for a training fault such as a NaN loss or a file that could not be written
    (disk full, permission), 130 for Ctrl-C (``fit`` first saves a resumable checkpoint)."""
    import signal
    import threading

    from jsonargparse import ArgumentError

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _interrupt_outside_training)
    try:
        check_config_files(argv)
        cli_main(argv, exit_on_error=False)
    except (TrainingInterrupted, KeyboardInterrupt) as err:
        message = str(err) if isinstance(err, TrainingInterrupted) else "interrupted (Ctrl-C)"
        print(f"resnet-pl: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WriteError as err:
        print(f"resnet-pl: error: {printable(' '.join(str(err).split()), 4000)}", file=sys.stderr)
        return 1
    except ArgumentError as err:
        message = printable(" ".join(str(err).split()), 4000)
        print(
            f"resnet-pl: error: {message} (resnet-pl {argv[0]} --help lists the options)",
            file=sys.stderr,
        )
        return 2
    except ResNetPLError as err:  # ours: the message names the fix; anything else is a bug
        message = printable(" ".join(str(err).split()), 4000)  # one line, escaped
        print(f"resnet-pl: error: {message}", file=sys.stderr)
        return 1 if isinstance(err, NonFiniteLossError) else 2
    except RuntimeError as err:
        # A --ckpt_path whose weights do not fit the model the options build (another class
        # count or channel count from --data, say): torch's page of size mismatches, as one line.
        text = str(err)
        if "Error(s) in loading state_dict" not in text:
            raise
        detail = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip()), "")
        print(
            f"resnet-pl: error: the --ckpt_path weights do not fit the model these options "
            f"build ({detail}); pass the --data/--model options it was trained with",
            file=sys.stderr,
        )
        return 2
    except OSError as err:
        # A write failure inside a library we do not wrap (TensorBoard's event writer thread,
        # a callback of the user's): still one line naming the file and the cause.
        if err.errno not in WRITE_ERRNOS:
            raise
        where = err.filename or "a file of this run"
        print(f"resnet-pl: error: cannot write {where}: {err.strerror}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 0
