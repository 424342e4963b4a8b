"""Options shared by several commands, so each one means the same everywhere.

- ``--device``: ``auto`` (the default everywhere) is this process's GPU when one is available, else the
  CPU; an explicit name is checked before any work (an absent GPU is one line, not a CUDA traceback).
- Conflicting flags (``--fp16 --int8``) are one ``error:`` line naming both, never a silent pick.
- Renamed options keep their old spelling as an alias that still works and warns once.

Imported by `mimzoo --help`: nothing heavy at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..errors import MimzooError

DEVICE_HELP = "cpu, cuda or cuda:N; auto: this process's GPU when one is available, else cpu."


class UsageError(MimzooError):
    """Options that cannot be used together, or a value out of range: the command line is at fault."""

    exit_code = 2  # click's code for a usage error


def device_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--device`` with the same default ("auto") and help in every command."""
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
                        help=DEVICE_HELP)(f)


def checked_device(device: str | None) -> str | None:
    """The device to pass on: None for auto (the callee picks the GPU when there is one), else the name,
    refused in one line when it does not exist here."""
    if device is None or device.strip().lower() == "auto":
        return None
    from ..encoders.device import check_device

    check_device(device)
    return device


def resolved_device(device: str | None) -> str:
    """Like :func:`checked_device`, but auto becomes the concrete "cuda" or "cpu" (for callees that need a
    name, like bench)."""
    checked = checked_device(device)
    if checked is not None:
        return checked
    from .._deps import require

    return "cuda" if require("torch").cuda.is_available() else "cpu"


def refuse_conflicts(fix: str, **given: Any) -> None:
    """Refuse more than one of `given` (option spelling -> value; None/False/() means not given).

    >>> refuse_conflicts("pass one precision", **{"--fp16": True, "--int8": True})
    Traceback (most recent call last):
    mimzoo.cli.options.UsageError: --fp16 and --int8 cannot be used together; pass one precision
    """
    used = [name for name, value in given.items() if value not in (None, False, ())]
    if len(used) > 1:
        names = ", ".join(used[:-1]) + " and " + used[-1]
        raise UsageError(f"{names} cannot be used together; {fix}")


def deprecated_alias(old: str, new: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback for an old option spelling kept as an alias: it warns once per run."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE:
            warned = ctx.meta.setdefault("mimzoo.deprecated", set())
            if old not in warned:
                warned.add(old)
                click.echo(f"warning: {old} is deprecated; use {new} (same meaning)", err=True)
        return value

    return callback
