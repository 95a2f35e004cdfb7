"""Bad requests get one line naming what the model takes (issue 23, item 7), on the command
line (exit 1) and in the page's API (400): a control the model does not take, a key that
does not parse, a style or an instrument it never learnt, a plan it cannot follow."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from composer.cli.main import main
from composer.controls.features import ControlSpec
from composer.model.checkpoint import save_checkpoint
from composer.model.config import ModelConfig
from composer.model.lstm import ComposerLSTM
from composer.serve.app import create_app
from composer.tokens.beats import NoteEventConfig
from composer.tokens.vocab import NOTES, Events
from composer.training.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(path: Path, instruments: bool = False, spec: ControlSpec | None = None,
         data: dict | None = None) -> Path:
    """An untrained tiny model of the beat vocabulary (what it takes is all that counts)."""
    events = Events(NOTES, NoteEventConfig(instruments=instruments))
    config = ModelConfig(vocab_size=events.size, embed_dim=8, hidden=16, layers=1,
                         controls=spec or ControlSpec())
    save_checkpoint(path, ComposerLSTM(config), config, events.to_dict(),
                    train_config=TrainConfig().to_dict(), step=0, metrics={},
                    data=data or {})
    return path


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> Path:
    """Instruments: its corpus held violins and cellos and no drums."""
    return tiny(tmp_path_factory.mktemp("ensemble") / "strings", instruments=True,
                data={"programs": [40, 42], "drums": False})


@pytest.fixture(scope="module")
def steer(tmp_path_factory) -> Path:
    """Every control, two styles."""
    spec = ControlSpec(("density", "pitch-classes", "style", "tempo"), ("bach", "folk"))
    return tiny(tmp_path_factory.mktemp("steer") / "steer", spec=spec)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """No controls, one instrument."""
    return tiny(tmp_path_factory.mktemp("plain") / "plain")


@pytest.fixture(scope="module")
def client(ensemble, steer, plain):
    with TestClient(create_app([ensemble, steer, plain])) as c:
        yield c


def post(client, model, **fields):
    return client.post("/api/generate", json={"model": model, "seconds": 1, "rng_seed": 1,
                                              **fields})


def error(response) -> str:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert "\n" not in message
    return message


def test_the_page_lists_each_models_controls(client):
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    from composer.model.checkpoint import shipped_names

    assert list(models)[-3:] == ["strings", "steer", "plain"]
    assert set(shipped_names()) <= set(models)  # every shipped model, by name
    assert [c["name"] for c in models["steer"]["controls"]] == \
        ["density", "key", "style", "tempo"]
    assert models["steer"]["takes"]["styles"] == ["bach", "folk"]
    assert [c["name"] for c in models["strings"]["controls"]] == ["instruments"]
    assert models["strings"]["takes"]["instruments"] is True
    assert models["plain"]["controls"] == [] and "corpus" not in models["plain"]["takes"]


@pytest.mark.parametrize("model, fields, words", [
    ("plain", {"controls": {"density": 2}}, "does not take 'density' (it takes no controls)"),
    ("steer", {"controls": {"key": "H major"}}, "unknown key 'H major': a key is"),
    ("steer", {"controls": {"style": "jazz"}}, "this model knows: bach, folk"),
    ("steer", {"controls": {"instruments": "violin"}},
     "does not take 'instruments' (it takes density, key, style (bach, folk), tempo)"),
    ("steer", {"plan": [{"from": 0, "density": 2}, {"from": 5, "tempo": 90}]},
     "plan entry 2: tempo is one per piece"),
    ("steer", {"plan": [{"from": 0, "loudness": 2}]},
     "plan: model 'steer' does not take 'loudness' (it takes density, key"),
    ("steer", {"plan": {"from": 0}}, "plan must be a list"),
    ("strings", {"controls": {"instruments": "kazooo"}}, "unknown instrument 'kazooo'"),
    ("strings", {"controls": {"instruments": "violin, trumpet"}},
     "never learnt Trumpet (it takes Violin, Cello)"),
    ("strings", {"controls": {"instruments": "cello, drums"}}, "never learnt Drums"),
    ("strings", {"controls": {"density": 3}}, "(it takes instruments)"),
])
def test_bad_requests_name_what_the_model_takes(client, model, fields, words):
    assert words in error(post(client, model, **fields))


def test_good_requests_with_a_plan_and_instruments(client):
    plan = [{"from": 0, "density": 2, "style": "folk"}, {"from": 0.5, "density": 6}]
    r = post(client, "steer", plan=plan, controls={"key": "D minor"})
    assert r.status_code == 200, r.text
    r = post(client, "strings", controls={"instruments": "violin, cello"})
    assert r.status_code == 200, r.text


def test_the_command_line_says_the_same(ensemble, steer, plain, tmp_path):
    def run(*args: str) -> str:
        result = CliRunner().invoke(main, ["generate", "--length", "1", "-q", "--out",
                                           str(tmp_path), "--copy-warn", "0", *args])
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        return result.output

    assert "never learnt Trumpet (it takes Violin, Cello)" in run(
        "--checkpoint", str(ensemble), "--instruments", "trumpet")
    assert "plays one part" in run("--checkpoint", str(plain), "--instruments", "violin")
    assert "unknown key 'H major': a key is a note" in run(
        "--checkpoint", str(steer), "--key", "H major")
    assert "does not take density (it takes no controls)" in run(
        "--checkpoint", str(plain), "--density", "2")
    assert "does not take style (it takes no controls)" in run(
        "--checkpoint", str(plain), "--style", "bach")
