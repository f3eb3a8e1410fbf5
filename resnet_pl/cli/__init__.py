"""The ``resnet-pl`` command: one package holding every subcommand.

Each subcommand lives in a module of this package and is listed once, in :data:`COMMANDS`
(its module, the function that runs it, and the one line ``resnet-pl --help`` prints). A module
is imported only when its command runs, so ``resnet-pl hub list`` never imports Lightning and
``resnet-pl --help`` imports nothing heavy.

- ``fit | validate | test | predict``: :mod:`resnet_pl.cli.lightning` (LightningCLI)
- ``hub``: :mod:`resnet_pl.cli.hub`
- ``export`` / ``classify``: :mod:`resnet_pl.cli.deploy`
- ``serve``: :mod:`resnet_pl.cli.serve`
- ``segment`` / ``detect``: :mod:`resnet_pl.cli.dense`
- ``benchmark``: :mod:`resnet_pl.cli.benchmark`
- ``data``: :mod:`resnet_pl.cli.data` (LitData shards)

Options are spelled with underscores everywhere (``--data_dir``); the dashed spellings of earlier
releases go through one shim, :func:`resnet_pl.cli.util.accept_dashed`.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resnet_pl.cli.lightning import ResNetCLI

EXIT_INTERRUPTED = 130  # the shell's status for a process stopped by SIGINT (128 + 2)


@dataclass(frozen=True)
class Command:
    """One subcommand: ``module.function(argv)`` runs it and returns the exit status.
    ``pass_name``: whether ``argv`` starts with the command's own name."""

    module: str
    function: str
    help: str
    pass_name: bool = False


# The one list of subcommands: ``resnet-pl --help`` and the dispatcher both read it.
COMMANDS: dict[str, Command] = {
    "fit": Command(
        "resnet_pl.cli.lightning", "lightning_main", "train a model with Lightning", True
    ),
    "validate": Command(
        "resnet_pl.cli.lightning", "lightning_main", "evaluate on the validation split", True
    ),
    "test": Command(
        "resnet_pl.cli.lightning", "lightning_main", "evaluate on the test split", True
    ),
    "predict": Command(
        "resnet_pl.cli.lightning", "lightning_main", "predict with a trained model", True
    ),
    "hub": Command(
        "resnet_pl.cli.hub", "main", "pretrained weights: list, info, verify, export, publish"
    ),
    "export": Command(
        "resnet_pl.cli.deploy", "main", "export a model to ONNX, verified against PyTorch", True
    ),
    "classify": Command(
        "resnet_pl.cli.deploy",
        "main",
        "classify image files with a hub model, checkpoint or ONNX file",
        True,
    ),
    "serve": Command(
        "resnet_pl.cli.serve",
        "main",
        "serve a model over HTTP (LitServe): JSON API, web page, batching",
    ),
    "data": Command(
        "resnet_pl.cli.data", "main", "datasets at scale: optimize a folder into LitData shards"
    ),
    "segment": Command(
        "resnet_pl.cli.dense", "main", "segment image files with a checkpoint: mask PNGs", True
    ),
    "detect": Command(
        "resnet_pl.cli.dense", "main", "detect objects in image files: a JSON of boxes", True
    ),
    "benchmark": Command(
        "resnet_pl.cli.benchmark",
        "main",
        "measure throughput (suites) or time to accuracy, against torchvision in the same run",
    ),
}


def usage() -> str:
    """``resnet-pl --help``: every subcommand with its one line, from :data:`COMMANDS`."""
    width = max(map(len, COMMANDS)) + 2
    rows = "\n".join(f"  {name:<{width}}{cmd.help}" for name, cmd in COMMANDS.items())
    return (
        "usage: resnet-pl COMMAND [options]\n\n"
        "Train, evaluate, export, serve and benchmark residual networks.\n\n"
        f"commands:\n{rows}\n\n"
        "resnet-pl COMMAND --help explains every option of a command.\n\n"
        "example:\n"
        "  resnet-pl fit --config configs/fashion_mnist_fast.yaml --trainer.max_epochs 1\n"
    )


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
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(args: list[str] | None = None) -> int:
    """Dispatch one subcommand through :data:`COMMANDS`."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"resnet-pl: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    run = getattr(importlib.import_module(command.module), command.function)
    return int(run(argv if command.pass_name else argv[1:]))


def cli_main(args: list[str] | None = None, **kwargs: Any) -> ResNetCLI:
    """:func:`resnet_pl.cli.lightning.cli_main` (kept importable from here)."""
    from resnet_pl.cli.lightning import cli_main as _cli_main

    return _cli_main(args, **kwargs)


def __getattr__(name: str) -> Any:
    # ``from resnet_pl.cli import names_model_class, ResNetCLI`` keep working without importing
    # Lightning when only ``main`` is wanted.
    if name in ("names_model_class", "ResNetCLI"):
        from resnet_pl.cli import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module 'resnet_pl.cli' has no attribute {name!r}")
