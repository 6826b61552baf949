"""What `--help` says a default is, is what the command does: training defaults come from
TrainConfig's presets, `serve`'s from the backend's Config, and every bracketed default survives
Rich's markup (a literal "[default: …]" in help text is eaten as a style tag)."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from backend.config import Config
from visionctl.cli import app
from visionctl.cli.options import Dataset, Strategy
from visionctl.ml.train_config import STRATEGIES, TrainConfig, make_config


def help_text(*command: str) -> str:
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "400", "NO_COLOR": "1"},
                             catch_exceptions=False)
    assert res.exit_code == 0
    return " ".join(res.output.split())  # unwrap Rich's panel


def option_help(text: str, option: str) -> str:
    """The help cell of one option in the unwrapped panel."""
    return text.split(f"│ {option} ", 1)[1].split("│ --", 1)[0]


@pytest.mark.parametrize("setting", ["epochs", "gamma", "seed"])
def test_train_help_states_each_datasets_setting_as_the_presets_do(setting):
    values = {d.value: getattr(make_config(d.value), setting) for d in Dataset}
    # One value when every preset agrees, else one per dataset (train_config.default_text).
    expected = (str(next(iter(values.values()))) if len(set(values.values())) == 1
                else ", ".join(f"{n} {d}" for d, n in values.items()))
    assert f"[default: ({expected})]" in option_help(help_text("train"), f"--{setting}")


def test_train_options_default_to_the_training_config():
    """An option with a fixed default must equal that setting in every dataset's config; per-dataset
    settings default to None so the preset applies."""
    train = typer.main.get_command(app).commands["train"]
    checked = 0
    for param in train.params:
        if param.name not in TrainConfig.__dataclass_fields__ or param.name == "dataset":
            continue
        for dataset in Dataset:
            preset = getattr(make_config(dataset.value), param.name)
            if param.default is None:
                assert preset is not None or param.name in ("init_weights", "data_dir")
            else:
                assert param.default == preset, f"--{param.name}: CLI {param.default!r}, {dataset} {preset!r}"
                checked += 1
    assert checked >= 4 * len(Dataset)


def test_strategy_choices_are_the_libraries():
    assert tuple(s.value for s in Strategy) == STRATEGIES


@pytest.mark.parametrize("option,value", [("--port", Config.port), ("--threads", Config.threads),
                                          ("--log-level", Config.log_level)])
def test_serve_help_shows_the_backends_defaults(option, value):
    assert re.search(rf"\[default: \(VISION_\w+ or {value}\)\]", option_help(help_text("serve"), option))


@pytest.mark.parametrize("command", ["train", "export", "serve", "predict", "ui", "build", "up"])
def test_no_default_is_lost_to_markup(command):
    """Defaults are written as show_default (rendered escaped), never as "[default: …]" inside help
    text, which Rich would swallow, and each one appears in the rendered panel."""
    cmd = typer.main.get_command(app).commands[command]
    text = help_text(command)
    for param in cmd.params:
        assert "[default" not in (getattr(param, "help", None) or ""), f"{command} {param.opts[0]}"
        if isinstance(param.show_default, str):
            assert "[default:" in option_help(text, param.opts[0]), f"{command} {param.opts[0]}"
