"""One command-line flag per setting (``--buffer-size``, ``--rate-limit`` ...).

Every flag takes its value as text, so ``--rate-limit=none`` clears an inherited value like
the other layers do; the values are parsed and checked when the layers are resolved
(:func:`sluicegate.datagen.resolve_settings`), where a bad one is reported with its flag.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..datagen import SETTINGS

_ALIASES = {"output_dir": ("--out", "--output-dir")}
_METAVARS = {"int": "N", "float": "X", "str": "DIR", "events": "FILE"}


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag per setting to ``parser`` (in their own help group)."""
    group = parser.add_argument_group(
        "settings",
        "each also in the file's [run] table, a profile, or SLUICEGATE_<NAME>; "
        "a flag wins over all of them; VALUE 'none' clears an inherited value",
    )
    for name, setting in SETTINGS.items():
        flags = _ALIASES.get(name, (setting.flag,))
        options: dict[str, Any] = {"dest": f"setting_{name}", "default": None}
        if setting.kind == "choice":
            options["metavar"] = "{" + ",".join(setting.choices) + "}"
        elif setting.kind == "bool":
            options.update(nargs="?", const="true", metavar="true|false")
        elif setting.kind == "events":
            options.update(nargs="?", const="true", metavar="FILE")
        else:
            options["metavar"] = _METAVARS.get(setting.kind, "VALUE")
        default = setting.default
        shown = "" if default is None or default is False else f"; default {default}"
        group.add_argument(*flags, help=f"{setting.help}{shown} [{setting.env}]", **options)


def given_settings(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    """The settings given as flags (as text) and the flag each came from."""
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        value = getattr(args, f"setting_{name}", None)
        if value is not None:
            values[name] = value
            origins[name] = _ALIASES.get(name, (setting.flag,))[0]
    return values, origins
