"""Click options built from the config: defaults and help from lcp_tune.config, choices from the
registries, so `--help`, completion and a run can never disagree.

An option's click default is the config's own value; what the user actually gave is told apart
by click's parameter source, so the layering defaults -> recipe -> preset -> flags still works. Choices are read lazily from
the registries, so `lcp-tune --help` does not import torch.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import click
from click.core import ParameterSource

from lcp_tune.config import ExperimentConfig, default_of, help_of
from lcp_tune.errors import LcpTuneError
from lcp_tune.rules import flag
from lcp_tune.trust import trust


class Command(click.Command):
    """A click command whose usage errors are one line naming the input (no usage block)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            error = click.ClickException(f"{exc.format_message()} (`lcp-tune {self.name} --help`)")
            error.exit_code = exc.exit_code   # 2, as for any usage error
            raise error from None


class RegistryChoice(click.Choice):
    """A click.Choice whose choices come from a registry when first needed.

    `accepts` lets an open registry take names beyond its list (a torchvision architecture,
    package.module:factory, a preset's .yaml path); they still show in help and completion.
    """

    def __init__(self, names: Callable[[], Sequence[str]], accepts: Optional[Callable[[str], bool]] = None,
                 metavar: Optional[str] = None, kind: str = "name"):
        self._names, self._accepts, self._metavar, self._kind = names, accepts, metavar, kind
        self.case_sensitive = True

    @property
    def choices(self) -> Sequence[str]:   # type: ignore[override]
        return tuple(self._names())

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> Optional[str]:
        return self._metavar or super().get_metavar(param, ctx)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if self._accepts is not None and isinstance(value, str) and value not in self.choices:
            if self._accepts(value):
                return value
            close = difflib.get_close_matches(value, self.choices, n=2)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            self.fail(f"unknown {self._kind} {value!r}: {hint}see `lcp-tune list`", param, ctx)
        return super().convert(value, param, ctx)


class IntOrWord(click.ParamType):
    """An integer, or one of a few words (--round-to 8 or --round-to auto); the range is checked
    by lcp_tune.rules like every other setting's."""

    name = "integer"

    def __init__(self, *words: str):
        self.words = words

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> Optional[str]:
        return "|".join(("INTEGER",) + self.words)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, int) or value in self.words:
            return value
        try:
            return int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer or {' / '.join(self.words)}", param, ctx)


def _archs() -> list[str]:
    from lcp_tune.models import list_archs
    return list_archs()


def _accepts_arch(name: str) -> bool:
    from lcp_tune.models import ARCHS
    return name in ARCHS


def _datasets() -> list[str]:
    from lcp_tune.data import list_datasets
    return list_datasets()


def _accepts_data(name: str) -> bool:
    return ":" in name


def _metrics() -> list[str]:
    from lcp_tune.pruning import list_metrics
    return list_metrics()


def _forms() -> list[str]:
    from lcp_tune.pruning import list_compensations
    return list_compensations()


def _searchers() -> list[str]:
    from lcp_tune.searchers import list_searchers
    return list_searchers()


def _schedulers() -> list[str]:
    from lcp_tune.tune.schedulers import SCHEDULERS
    return SCHEDULERS.names()


def _presets() -> list[str]:
    from lcp_tune.search_spaces import list_presets
    return list_presets()


def _methods() -> list[str]:
    from lcp_tune.run.validate import METHODS
    return list(METHODS)


def _centers() -> list[str]:
    from lcp_tune.searchers.space import CENTERS
    return list(CENTERS)


def _recipes() -> list[str]:
    from lcp_tune.config import RECIPES
    return sorted(RECIPES)


# config key -> click type of its flag (a registry choice, or the type of the config's default)
CHOICES: dict[str, click.ParamType] = {
    "arch": RegistryChoice(_archs, _accepts_arch, "NAME", "architecture"),
    "data": RegistryChoice(_datasets, _accepts_data, "NAME", "dataset"),
    "prune.metric": RegistryChoice(_metrics),
    "prune.form": RegistryChoice(_forms),
    "search.searcher": RegistryChoice(_searchers),
    "search.scheduler": RegistryChoice(_schedulers),
    "search.space": RegistryChoice(_presets, lambda v: v.endswith((".yaml", ".yml")), "NAME|PATH.yaml",
                                   "search-space preset"),
    "method": RegistryChoice(_methods),
    "search.center": RegistryChoice(_centers),
    "recipe": RegistryChoice(_recipes),
    "prune.round_to": IntOrWord("auto"),
}
RECIPE_DEFAULTS = {"finetune.epochs", "base_train.epochs", "recipe", "finetune.distill"}   # shown as "the recipe's"


def param_name(key: str) -> str:
    """The Python name click gives the flag of `key` (--num-classes -> num_classes)."""
    return flag(key).lstrip("-").replace("-", "_")


def config_option(key: str) -> Callable:
    """A click option for the config field `key`: help and shown default from the config."""
    recipe_default = key in RECIPE_DEFAULTS
    default = None if recipe_default else default_of(key)
    shown: Any = ("the dataset's" if key == "recipe" else "the recipe's") if recipe_default else default is not None
    kind = CHOICES.get(key) or _click_type(key)
    if kind is bool:   # --distill / --no-distill
        return click.option(f"{flag(key)}/--no-{flag(key)[2:]}", param_name(key), default=default,
                            show_default=shown, help=help_of(key))
    return click.option(flag(key), param_name(key), type=kind, default=default, show_default=shown,
                        help=help_of(key) if key not in ("finetune.epochs", "base_train.epochs") else
                        {"finetune.epochs": "Epochs of the final fine-tune.",
                         "base_train.epochs": "Training epochs."}[key])


def _click_type(key: str) -> Any:
    section, _, name = key.rpartition(".")
    cls: Any = ExperimentConfig
    if section:
        cls = type(getattr(ExperimentConfig(), section))
    hint = str({f.name: f for f in dataclasses.fields(cls)}[name].type)
    return bool if hint == "bool" else int if "int" in hint else float if "float" in hint else str


def config_options(keys: Sequence[str]) -> Callable:
    """Decorate a command with one option per config key, in the given order."""
    def decorate(fn: Callable) -> Callable:
        for key in reversed(keys):
            fn = config_option(key)(fn)
        return fn
    return decorate


def given(keys: Sequence[str], flags: dict[str, Any]) -> dict[str, Any]:
    """The flags the user gave on the command line, as {dotted key: value}; defaults are left out."""
    ctx = click.get_current_context()
    out = {key: flags[param_name(key)] for key in keys
           if ctx.get_parameter_source(param_name(key)) not in (None, ParameterSource.DEFAULT)}
    trust(v for k, v in out.items() if k in ("arch", "data"))   # a factory the user typed may run
    return out


def path_option(*names: str, **kw: Any) -> Callable:
    return click.option(*names, type=click.Path(path_type=Path), **kw)


def fail(exc: LcpTuneError) -> None:
    """Turn a user-facing error into click's one-line message; exit status 1, or the error's own
    (130 / 143 for an interruption)."""
    error = click.ClickException(str(exc))
    error.exit_code = getattr(exc, "exit_code", 1)
    raise error from None
