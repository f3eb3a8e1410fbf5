"""The one command-line dialect of resnet-pl, for the commands outside LightningCLI.

``resnet-pl hub ...``, ``resnet-pl export`` and ``resnet-pl classify`` parse with jsonargparse,
like ``resnet-pl fit``, and spell options the same way: words joined by underscores
(``--data_dir``, ``--batch_size``). Where a command calls a function, its options are that
function's parameters, read from its signature and docstring (``add_function_arguments``, as
LightningCLI reads a model's ``__init__``), not declared a second time.

:func:`accept_dashed` is the one shim for the spellings of earlier releases: dashed ones
(``--data-dir``) and options a command has renamed (``export --static_batch`` is now
``--dynamic_batch false``). They are accepted for one release; each use prints a deprecation
line on stderr naming the new option. It also lets a boolean option be given bare
(``--dynamic_hw`` means ``--dynamic_hw true``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from jsonargparse import ArgumentParser

from resnet_pl.errors import ResNetPLError
from resnet_pl.limits import printable

# The release that stops accepting the dashed spellings.
DASHED_REMOVED_IN = "0.3"


def new_parser(prog: str, description: str) -> ArgumentParser:
    """A parser of the dialect: jsonargparse, errors raised (not printed and exited), so the
    caller reports them as one line."""
    return ArgumentParser(prog=prog, description=description, exit_on_error=False)


@dataclass(frozen=True)
class Renamed:
    """What an option of an earlier release became.

    ``new``: the option to use now. ``value``: for an old *flag* (it took no value), the value
    the new option gets (``--static_batch`` -> ``--dynamic_batch false``). ``convert``: for an
    old option with a value, its new value, or the whole new spelling as a list of arguments
    (``--metadata k=v`` -> ``["--metadata.k", "v"]``); it may raise ValueError naming the
    expected form.
    ``None`` for both: same value, new name. ``new=""`` drops the option (it did nothing).
    """

    new: str
    value: str | None = None
    convert: Callable[[str], str | list[str]] | None = None


_BOOL_HINTS = (bool, Optional[bool])  # noqa: UP045  (the object jsonargparse stores)


def _bool_options(parser: ArgumentParser) -> set[str]:
    return {
        opt
        for action in parser._actions
        if getattr(action, "_typehint", None) in _BOOL_HINTS
        for opt in action.option_strings
    }


def accept_dashed(
    argv: Sequence[str],
    parser: ArgumentParser,
    prog: str,
    renamed: Mapping[str, Renamed] | None = None,
) -> list[str]:
    """``argv`` with the spellings of earlier releases rewritten, and a deprecation notice on
    stderr for each: dashed options (``--data-dir``, ``--data-dir=x``) that ``parser`` knows as
    ``--data_dir``, and the options in ``renamed`` (by their old underscore spelling). A
    boolean option given bare (``--verify``) becomes ``--verify true`` (no notice)."""
    renamed = dict(renamed or {})
    known = {
        opt.replace("_", "-"): opt
        for action in parser._actions
        for opt in action.option_strings
        if opt.startswith("--") and "_" in opt
    }
    known.update({old.replace("_", "-"): old for old in renamed if "_" in old})
    bools = _bool_options(parser)

    def warn(old: str, new: str) -> None:
        print(
            f"{prog}: DeprecationWarning: {old} is deprecated, use {new} (the old spelling "
            f"goes in resnet-pl {DASHED_REMOVED_IN})",
            file=sys.stderr,
        )

    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":  # everything after is positional
            out.extend(argv[i - 1 :])
            break
        old, eq, value = arg.partition("=")
        name = known.get(old, old)
        rule = renamed.get(name)
        if rule is not None:
            if rule.value is not None:  # an old flag: it takes no value
                warn(old, f"{rule.new} {rule.value}")
                out += [rule.new, rule.value]
                continue
            if not eq and i < len(argv):
                value, eq = argv[i], "="
                i += 1
            if not rule.new:
                warn(old, "nothing (it is ignored)")
                continue
            try:
                new = rule.convert(value) if rule.convert and eq else value
            except ValueError as err:
                raise OptionSpellingError(f"{old}: {err}") from None
            spelled = new if isinstance(new, list) else [rule.new, new] if eq else [rule.new]
            if spelled[0] != old:
                warn(old, spelled[0])
            out += spelled
            continue
        if name != old:
            warn(old, name)
        if name in bools and not eq and (i >= len(argv) or argv[i].startswith("-")):
            out += [name, "true"]
            continue
        out.append(name + eq + value)
    return out


class OptionSpellingError(ResNetPLError, ValueError):
    """An old spelling whose value cannot be converted (reported like a bad option)."""


def parse(parser: ArgumentParser, argv: Sequence[str], prog: str) -> Any:
    """Parse ``argv``; returns the namespace, or an exit status after ``--help`` (0) or a bad
    option (2, one line on stderr naming the fix)."""
    from jsonargparse import ArgumentError as ParseError

    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:  # --help printed
        return int(exc.code) if isinstance(exc.code, int) else 0
    except ParseError as err:
        message = printable(" ".join(str(err).split()), limit=4000)
        print(f"{prog}: error: {message} ({prog} --help lists the options)", file=sys.stderr)
        return 2
