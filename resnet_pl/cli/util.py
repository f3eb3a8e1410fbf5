"""The one command-line dialect of resnet-pl, for the commands outside LightningCLI.

``resnet-pl hub ...``, ``resnet-pl export`` and ``resnet-pl classify`` parse with jsonargparse,
like ``resnet-pl fit``, and spell options the same way: words joined by underscores
(``--data_dir``, ``--batch_size``). The dashed spellings of earlier releases (``--data-dir``)
are still accepted for one release; each use prints a deprecation notice on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from jsonargparse import ArgumentParser

from resnet_pl.limits import printable

# The release that stops accepting the dashed spellings.
DASHED_REMOVED_IN = "0.3"


def new_parser(prog: str, description: str) -> ArgumentParser:
    """A parser of the dialect: jsonargparse, errors raised (not printed and exited), so the
    caller reports them as one line."""
    return ArgumentParser(prog=prog, description=description, exit_on_error=False)


def accept_dashed(argv: Sequence[str], parser: ArgumentParser, prog: str) -> list[str]:
    """``argv`` with each deprecated dashed option (``--data-dir``, ``--data-dir=x``) that
    ``parser`` knows as ``--data_dir`` rewritten, and a deprecation notice on stderr for each."""
    known = {
        opt.replace("_", "-"): opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and "_" in opt
    }
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":  # everything after is positional
            out.extend(argv[i:])
            break
        name, eq, value = arg.partition("=")
        if name in known:
            print(
                f"{prog}: DeprecationWarning: {name} is deprecated, use {known[name]} (the "
                f"dashed spelling goes in resnet-pl {DASHED_REMOVED_IN})",
                file=sys.stderr,
            )
            arg = known[name] + eq + value
        out.append(arg)
    return out


def parse(parser: ArgumentParser, argv: Sequence[str], prog: str) -> Any:
    """Parse ``argv``; returns the namespace, or an exit status after ``--help`` (0) or a bad
    option (2, one line on stderr naming the fix)."""
    from jsonargparse import ArgumentError

    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:  # --help printed
        return int(exc.code) if isinstance(exc.code, int) else 0
    except ArgumentError as err:
        message = printable(" ".join(str(err).split()), limit=4000)
        print(f"{prog}: error: {message} ({prog} --help lists the options)", file=sys.stderr)
        return 2
