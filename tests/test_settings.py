"""One source for every setting: --help defaults are the config's, rules are shared by the CLI,
the presets and the Python API, and choices come from the registries."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from lcp_tune.cli import main
from lcp_tune.cli.options import CHOICES, param_name
from lcp_tune.cli.search import SEARCH_KEYS
from lcp_tune.cli.train import TRAIN_KEYS
from lcp_tune.config import ExperimentConfig, default_of
from lcp_tune.errors import LcpTuneError
from lcp_tune.run.settings import dotted, resolve_config
from lcp_tune.search_spaces import PresetError, load_preset


def _help(command: str) -> str:
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


@pytest.mark.parametrize("command, keys", [("search", SEARCH_KEYS), ("train", TRAIN_KEYS)])
def test_every_help_default_is_the_configs(command, keys):
    text = _help(command)
    options = {p.name: p for p in main.commands[command].params}
    checked = 0
    for key in keys:
        default = default_of(key)
        option = options[param_name(key)]
        if key in ("recipe", "finetune.epochs", "base_train.epochs", "finetune.distill"):
            assert option.default is None   # depends on the dataset's recipe, and says so
            continue
        assert option.default == default, key
        if default is not None:
            flag = option.opts[0]
            shown = re.search(re.escape(flag) + r" .*?\[default: ([^\]]+)\]", text)
            # click shows a bool flag's default by its name: --baselines/--no-baselines -> "baselines"
            expected = (flag[2:] if default else f"no-{flag[2:]}") if isinstance(default, bool) else str(default)
            # click wraps help at hyphens: "shared-\n data" reads "shared- data" once spaces are joined
            assert shown and shown.group(1).replace("- ", "-") == expected, (key, shown and shown.group(1))
            checked += 1
    assert checked >= 3


def test_train_and_search_default_to_the_same_architecture():
    search = {p.name: p for p in main.commands["search"].params}["arch"].default
    train = {p.name: p for p in main.commands["train"].params}["arch"].default
    assert search == train == ExperimentConfig().arch == "resnet20_narrow"


def test_choices_come_from_the_registries():
    from lcp_tune.pruning import list_metrics
    from lcp_tune.searchers import list_searchers

    assert list(CHOICES["search.searcher"].choices) == list_searchers()
    assert list(CHOICES["prune.metric"].choices) == list_metrics()
    help_text = _help("search")
    assert "[bn|group_l2|l1|l2|taylor]" in help_text and "evolution" in help_text


@pytest.mark.parametrize("setting, value, rule", [
    ("safeguard", 1.5, "must be in [0, 1)"),
    ("tau_hat", -3, "must be an integer >= 0"),
    ("budget", 1.0, "must be in (0, 1)"),
])
def test_a_rule_is_the_same_for_the_cli_the_preset_and_the_api(tmp_path, setting, value, rule):
    flag = "--" + setting.replace("_", "-")
    cli = CliRunner().invoke(main, ["search", flag, str(value), "--out", str(tmp_path / "x")])
    assert cli.exit_code != 0 and rule in cli.output and len(cli.output.strip().splitlines()) == 1
    with pytest.raises(LcpTuneError, match=re.escape(rule)):
        resolve_config(dotted({setting: value}))
    if setting != "budget":   # a preset holds the search space, not the budget
        preset = tmp_path / "space.yaml"
        fields = {"metric": "l2", "form": "additive", "bound": 2, "tau_hat": 10, "bn_recalibration": True,
                  "safeguard": 0.1, setting: value}
        preset.write_text("".join(f"{k}: {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in fields.items()))
        with pytest.raises(PresetError, match=re.escape(rule)):
            load_preset(str(preset))


def test_api_settings_are_the_config_field_names():
    config = resolve_config(dotted({"budget": 0.3, "tau_hat": 7, "searcher": "evolution", "finetune_epochs": 2}))
    assert (config.prune.budget, config.search.tau_hat, config.search.searcher, config.finetune.epochs) == \
        (0.3, 7, "evolution", 2)
    with pytest.raises(LcpTuneError, match="unknown setting 'budgett': allowed are .*budget"):
        dotted({"budgett": 0.3})


def test_usage_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(main, ["search", "--num-samples", "many"])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "'many' is not a valid integer" in result.output and "Usage:" not in result.output
