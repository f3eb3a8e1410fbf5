"""The ``resnet-pl`` command.

- ``resnet-pl fit|validate|test|predict ...``: training and evaluation through LightningCLI
  (``--config configs/fashion_mnist_resnet20.yaml``; every option has ``--help``).
- ``resnet-pl hub ...``: list, inspect and verify pretrained weights; convert checkpoints.
- ``resnet-pl export ...`` / ``resnet-pl classify ...``: ONNX export and prediction on files.
- ``resnet-pl benchmark ...``: the throughput suite (``python -m benchmarks.run``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from resnet_pl.errors import ResNetPLError
from resnet_pl.fileio import WRITE_ERRNOS, WriteError
from resnet_pl.lightning.callbacks import PlotCallback, PredictionWriter
from resnet_pl.lightning.checkpointing import (
    AtomicCheckpointIO,
    BestAndLastCheckpoint,
    ExactResumeCallback,
    StepCheckpoint,
)
from resnet_pl.lightning.data import ImageDataModule
from resnet_pl.lightning.errors import (
    ConfigError,
    NonFiniteLossError,
    UntrustedCheckpointError,
    checkpoint_load_error,
)
from resnet_pl.lightning.interrupt import GracefulInterrupt, TrainingInterrupted
from resnet_pl.lightning.loggers import (
    AtomicCSVLogger,
    AtomicSaveConfigCallback,
    AtomicTensorBoardLogger,
)
from resnet_pl.lightning.module import ResNetClassifier

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
USAGE = """usage: resnet-pl COMMAND [options]

Train, evaluate, export and benchmark residual networks.

commands:
  fit | validate | test | predict   train / evaluate with Lightning (resnet-pl fit --help)
  hub                               pretrained weights: list, info, verify, export-checkpoint
  export                            export a model to ONNX, verified against PyTorch
  classify                          classify image files with a model, checkpoint or ONNX file
  benchmark                         throughput suite (same as python -m benchmarks.run);
                                    benchmark time-to-accuracy: train recipes, accuracy vs time

example:
  resnet-pl fit --config configs/fashion_mnist_resnet20.yaml --trainer.max_epochs 1
"""


class ResNetCLI(LightningCLI):
    """LightningCLI with resnet-pl's defaults: the data's class count and channels linked to the
    model, best + last + mid-epoch checkpoints written atomically, exact resume with
    ``--ckpt_path last``, ``--ckpt_path`` files read with ``weights_only=True`` unless
    ``--weights_only false``, unwritable run folders refused up front, CSV and TensorBoard logs
    in one run folder, a rich progress bar and PNG plots."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        parser.add_argument(
            "--run_name",
            type=str,
            default="resnet_pl",
            help="sub-folder of --run_root for this run",
        )
        parser.add_argument(
            "--run_root", type=str, default="runs", help="where logs and checkpoints go"
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=200,
            help="also save last_step.ckpt every N optimizer steps (0: only at validation)",
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

    def _run_config(self) -> tuple[Any, Path]:
        """This subcommand's configuration and its run folder (``--run_root/--run_name``)."""
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        return cfg, Path(cfg["run_root"]) / cfg["run_name"]

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

        try:
            super()._parse_ckpt_path()
        except ArgumentError:  # the file loaded; its hyperparameters do not fit the options
            raise
        except Exception as err:  # torch.load of arbitrary bytes can raise almost anything
            error = checkpoint_load_error(path, err, "--weights_only false")
            if cfg.get("weights_only") is False and isinstance(error, UntrustedCheckpointError):
                return
            raise error from None

    def before_instantiate_classes(self) -> None:
        cfg, run_dir = self._run_config()
        if cfg["checkpoint"]["dirpath"] is None:
            cfg["checkpoint"]["dirpath"] = str(run_dir / "checkpoints")
        if cfg["trainer"].get("default_root_dir") is None:
            cfg["trainer"]["default_root_dir"] = str(run_dir)
        # Fail now, not after an epoch, when logs or checkpoints cannot be written.
        _check_writable(run_dir, "--run_root/--run_name")
        if self.subcommand == "fit":
            _check_writable(Path(cfg["checkpoint"]["dirpath"]), "--checkpoint.dirpath")
        # Checkpoints given by --ckpt_path are read with the restricted unpickler unless the
        # user says otherwise (--weights_only false, for files from a trusted source).
        if "weights_only" in cfg and cfg["weights_only"] is None:
            cfg["weights_only"] = True

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg, run_dir = self._run_config()
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
            kwargs["logger"] = _loggers(run_dir)
        if not cfg["trainer"].get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)


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


def _loggers(run_dir: Path) -> list[Any]:
    """CSV + TensorBoard logs in the same ``run_dir/version_N`` folder."""
    versions = [
        int(p.name.split("_", 1)[1])
        for p in run_dir.glob("version_*")
        if p.name.split("_", 1)[1].isdigit()
    ]
    version = max(versions, default=-1) + 1
    return [
        AtomicCSVLogger(save_dir=str(run_dir.parent), name=run_dir.name, version=version),
        AtomicTensorBoardLogger(
            save_dir=str(run_dir.parent),
            name=run_dir.name,
            version=version,
            default_hp_metric=False,
        ),
    ]


def cli_main(
    args: list[str] | None = None,
    *,
    model_class: type[ResNetClassifier] = ResNetClassifier,
    datamodule_class: type[ImageDataModule] = ImageDataModule,
    run: bool = True,
    exit_on_error: bool = True,
) -> ResNetCLI:
    """Run the Lightning part of the CLI; tests and user projects call this with ``args``
    (and their own subclasses). ``exit_on_error=False`` raises ``jsonargparse.ArgumentError``
    for a bad option instead of printing the usage and exiting."""
    return ResNetCLI(
        model_class,
        datamodule_class,
        args=args,  # type: ignore[arg-type]
        run=run,
        save_config_callback=AtomicSaveConfigCallback,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        parser_kwargs={"prog": "resnet-pl", "exit_on_error": exit_on_error},
    )


EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT (128 + 2)


def _interrupt_outside_training(signum: int, frame: Any) -> None:
    # Ctrl-C while no training step runs (setup, data loading, sanity check, evaluation):
    # nothing half-done needs saving; stop now, as a TrainingInterrupted so that Lightning
    # re-raises it instead of calling sys.exit(1).
    raise TrainingInterrupted("interrupted (Ctrl-C); no training step was in progress")


def _lightning_main(argv: list[str]) -> int:
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
        cli_main(argv, exit_on_error=False)
    except (TrainingInterrupted, KeyboardInterrupt) as err:
        message = str(err) if isinstance(err, TrainingInterrupted) else "interrupted (Ctrl-C)"
        print(f"resnet-pl: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except WriteError as err:
        print(f"resnet-pl: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except ArgumentError as err:
        message = " ".join(str(err).split())
        print(
            f"resnet-pl: error: {message} (resnet-pl {argv[0]} --help lists the options)",
            file=sys.stderr,
        )
        return 2
    except ResNetPLError as err:  # ours: the message names the fix; anything else is a bug
        message = " ".join(str(err).split())  # one line
        print(f"resnet-pl: error: {message}", file=sys.stderr)
        return 1 if isinstance(err, NonFiniteLossError) else 2
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


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``resnet-pl`` console script."""
    try:
        return _main(args)
    except KeyboardInterrupt:
        # Ctrl-C in hub, export, classify: their outputs are written through temporary files,
        # so nothing partial is left; one line, the shell's status for SIGINT.
        print("resnet-pl: interrupted (Ctrl-C); no partial output was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `resnet-pl classify ... | head`: the reader left; that is not an error.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(args: list[str] | None = None) -> int:
    """Dispatch one subcommand; see USAGE."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command = argv[0]
    if command in LIGHTNING_COMMANDS:
        return _lightning_main(argv)
    if command == "hub":
        from resnet_pl.hub.cli import main as hub_main

        return hub_main(argv[1:])
    if command in ("export", "classify"):
        from resnet_pl.deploy.cli import main as deploy_main

        return deploy_main(argv)
    if command == "benchmark":
        try:
            if argv[1:2] == ["time-to-accuracy"]:
                from benchmarks.time_to_accuracy import main as tta_main

                return tta_main(argv[2:])
            from benchmarks.run import main as bench_main
        except ImportError:
            print(
                "resnet-pl benchmark needs the repository's benchmarks/ folder: run it from a "
                "clone, or use python -m benchmarks.run",
                file=sys.stderr,
            )
            return 2
        return bench_main(argv[1:])
    print(f"resnet-pl: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
