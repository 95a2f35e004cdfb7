"""Issue 26: dependencies held to what composer uses them for. uvicorn and torch are capped
at the versions verified (an upgrade is a decision: .ci/run reports the newest uvicorn),
the int8 engine `auto` picks is stated, matplotlib is an extra with a one-line error, and
rendering uses pretty_midi's soundfont when the system has none."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import write_tune
from packaging.requirements import Requirement
from packaging.version import Version

import composer.midi.render as render_mod
from composer.cli.main import main
from composer.midi.render import RenderError, bundled_soundfont, find_soundfont
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.model.steppers import make_stepper

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirement(name: str, group: str | None = None) -> Requirement:
    reqs = PROJECT["optional-dependencies"][group] if group else PROJECT["dependencies"]
    found = [Requirement(r) for r in reqs if Requirement(r).name == name]
    assert found, f"{name} is not in {group or 'dependencies'}"
    return found[0]


@pytest.mark.parametrize("name,newest_verified", [("uvicorn", "0.55.0"), ("torch", "2.13.0")])
def test_uvicorn_and_torch_are_capped_at_what_was_verified(name, newest_verified):
    spec = requirement(name).specifier
    assert Version(newest_verified) in spec  # before: any uvicorn>=0.30, any torch>=2.10
    assert not any(Version(v) in spec for v in ("1.0", "3.0", "99"))  # capped
    assert Version(version(name).split("+")[0]) in spec  # what these tests run on


def test_torch_floor_kept_for_the_safe_loader():
    assert Version("2.9.1") not in requirement("torch").specifier


def test_ci_reports_the_newest_uvicorn_without_failing():
    ci = (ROOT / ".ci" / "run").read_text()
    step = ci[ci.index('newest="$scratch/newest-uvicorn"'):]
    assert step.startswith('newest="$scratch/newest-uvicorn"\nif pip install')  # an `if`:
    assert "tests/test_server_hostile.py" in step and "\nfi\n" in step  # set -e exempt


def test_auto_takes_the_torch_ao_int8_engine_on_cpu_else_fused_fp32(monkeypatch):
    torch.manual_seed(0)
    model = ComposerLSTM(ModelConfig.preset("tiny", vocab_size=40)).eval()
    assert make_stepper(model, "auto").name == "int8"  # torch.ao.quantization's dynamic int8
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # a torch without it
    assert make_stepper(model, "auto").name == "fused"  # the fp32 fallback, no error


def test_matplotlib_is_the_plot_extra():
    assert "matplotlib" not in {Requirement(r).name for r in PROJECT["dependencies"]}
    requirement("matplotlib", "plot")
    requirement("matplotlib", "test")  # so that the tests draw


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
                 "matplotlib.collections"):
        monkeypatch.setitem(sys.modules, name, None)
    midi = write_tune(tmp_path / "x.mid", [60, 62])
    r = CliRunner().invoke(main, ["plot", str(midi)])
    assert r.exit_code == 1
    assert r.output == "Error: drawing needs matplotlib: pip install 'composer[plot]'\n"
    with pytest.raises(RenderError, match=r"composer\[plot\]"):
        render_mod.plot_piano_roll(midi, tmp_path / "y.png")
    r = CliRunner().invoke(main, ["generate", "--length", "1", "--plot", "--out",
                                  str(tmp_path / "out")])
    assert r.exit_code == 1 and "composer[plot]" in r.output
    assert not (tmp_path / "out").exists()  # said before any work, nothing written


def test_pretty_midis_soundfont_when_the_system_has_none(monkeypatch):
    monkeypatch.setattr(render_mod, "SOUNDFONT_PATHS", ())
    monkeypatch.delenv("COMPOSER_SOUNDFONT", raising=False)
    bundled = bundled_soundfont()
    assert bundled is not None and bundled.suffix == ".sf2" and "pretty_midi" in bundled.parts
    assert find_soundfont() == bundled  # before: None, so sine waves on a bare install
