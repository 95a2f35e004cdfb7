"""``composer serve`` in a real headless browser: Debian's chromium driven by selenium
through /usr/bin/chromedriver (no browser or driver download). A real uvicorn server runs
in a subprocess on a free port with the shipped model.

Skipped when chromium, chromedriver or selenium is missing, except under CI (env ``CI``
set), where that fails. With ``COMPOSER_SCREENSHOT=PATH`` the page is saved there as a
PNG once it shows its results (the README's picture).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port, write_tune

from composer.midi.io import load

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and not shutil.which(Path(path).name):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


def tiny_models(folder: Path) -> list[Path]:
    """Two untrained tiny models served beside the shipped ones: ``plain`` takes no
    controls, ``steer`` takes every control with two styles."""
    from composer.controls.features import ControlSpec
    from composer.model.checkpoint import save_checkpoint
    from composer.model.config import ModelConfig
    from composer.model.lstm import ComposerLSTM
    from composer.tokens.beats import NoteEventConfig
    from composer.tokens.vocab import NOTES, Events
    from composer.training.config import TrainConfig

    events = Events(NOTES, NoteEventConfig())
    spec = ControlSpec(("density", "pitch-classes", "style", "tempo"), ("bach", "folk"))
    paths = []
    for name, controls in (("plain", ControlSpec()), ("steer", spec)):
        config = ModelConfig(vocab_size=events.size, embed_dim=8, hidden=16, layers=1,
                             controls=controls)
        paths.append(save_checkpoint(folder / name, ComposerLSTM(config), config,
                                     events.to_dict(), train_config=TrainConfig().to_dict(),
                                     step=0, metrics={}, data={}))
    return paths


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    missing = _missing()
    if missing and os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {missing}")
    if missing:
        pytest.skip(missing)
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = tiny_models(tmp_path_factory.mktemp("models"))
    proc = subprocess.Popen([sys.executable, "-m", "composer", "serve", "--port", str(port),
                             *(a for path in extra for a in ("--checkpoint", str(path)))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    pytest.fail(f"composer serve did not start: {out[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser(server):
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1100", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = 240.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def results(driver) -> list:
    return driver.find_elements("css selector", "#results .result")


def generate_and_wait(driver, count: int) -> object:
    """Click Generate; wait for the ``count``-th result, its drawn piano roll and audio."""
    driver.find_element("id", "generate").click()
    wait_for(driver, lambda d: len(results(d)) >= count or d.find_element("id", "error")
             .is_displayed())
    error = driver.find_element("id", "error")
    assert not error.is_displayed(), error.text
    newest = results(driver)[0]
    wait_for(driver, lambda d: newest.find_element("css selector", "canvas")
             .get_attribute("data-drawn"))
    audio = newest.find_element("css selector", "audio")
    wait_for(driver, lambda d: d.execute_script(
        "return arguments[0].readyState >= 1 && arguments[0].duration > 1", audio))
    return newest


def choose(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def set_value(driver, element_id: str, value: str) -> None:
    field = driver.find_element("id", element_id)
    field.clear()
    field.send_keys(value)


def test_seed_generate_see_hear_download(browser, server, tmp_path):
    driver = browser
    driver.get(server + "/")
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    assert driver.find_element("id", "model").get_attribute("value") == "default"
    choose(driver, "seed-kind", "pitches")
    set_value(driver, "pitches", "C4 E4 G4")
    set_value(driver, "length", "6")
    set_value(driver, "rng-seed", "7")
    first = generate_and_wait(driver, 1)
    # The piano roll is drawn (notes and a shaded seed band), the audio plays the WAV.
    painted = driver.execute_script("""
        const c = arguments[0], g = c.getContext('2d');
        const px = g.getImageData(0, 0, c.width, c.height).data;
        let ink = 0, seed = 0;
        for (let i = 0; i < px.length; i += 4) {
          if (px[i] < 200 || px[i + 1] < 200 || px[i + 2] < 200) ink++;
          if (px[i] > 240 && px[i + 2] < 235 && px[i + 1] > 200) seed++;
        }
        return [ink, seed];""", first.find_element("css selector", "canvas"))
    assert painted[0] > 200 and painted[1] > 100, painted
    assert "seed 0.5 s" in first.find_element("css selector", ".meta").text
    # The .mid link, fetched by the page itself, parses and starts with the seed chord.
    link = first.find_element("css selector", "a.download-mid")
    assert link.text == "Download .mid" and link.get_attribute("download").endswith(".mid")
    data = driver.execute_async_script("""
        const done = arguments[1];
        fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => {
          let s = ''; for (const x of new Uint8Array(b)) s += String.fromCharCode(x);
          done(btoa(s)); });""", link.get_attribute("href"))
    (tmp_path / "first.mid").write_bytes(base64.b64decode(data))
    notes = load(tmp_path / "first.mid").notes
    assert sorted(notes["pitch"][notes["start"] < 0.01].tolist())[:3] == [60, 64, 67]
    assert notes["end"].max() > 5

    # Continue from here: the result becomes the seed of the next one.
    first.find_element("css selector", "button.continue").click()
    assert driver.find_element("id", "seed-kind").get_attribute("value") == "result"
    set_value(driver, "length", "3")
    second = generate_and_wait(driver, 2)
    seed_text = second.find_element("css selector", ".meta").text
    assert "seed" in seed_text and "seed 0.5 s" not in seed_text

    # Upload a MIDI file as the seed.
    tune = write_tune(tmp_path / "tune.mid", [67, 65, 64, 62, 60, 62, 64, 67])
    choose(driver, "seed-kind", "upload")
    driver.find_element("id", "upload").send_keys(str(tune))
    generate_and_wait(driver, 3)
    # A bad seed: the page shows the server's one-line message, no new result.
    choose(driver, "seed-kind", "pitches")
    set_value(driver, "pitches", "C4 H4")
    driver.find_element("id", "generate").click()
    error = driver.find_element("id", "error")
    wait_for(driver, lambda d: error.is_displayed())
    assert "H4" in error.text and len(results(driver)) == 3


def test_choose_a_model_see_its_controls_draw_a_plan(browser, server):
    """Every shipped model is offered; choosing one shows the controls it takes (and only
    those), a plan drawn over the piece's seconds goes with the request. The model steered
    is the first shipped one that takes a style (else a tiny one served beside them)."""
    import json

    from selenium.webdriver.common.action_chains import ActionChains

    from composer.model.checkpoint import shipped_names

    served = json.loads(urllib.request.urlopen(f"{server}/api/models").read())["models"]
    steered = next((m for m in served if m["id"] in shipped_names()
                    and "style" in [c["name"] for c in m["controls"]]),
                   next(m for m in served if m["id"] == "steer"))
    driver = browser
    driver.get(server + "/")
    wait_for(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    offered = [o.get_attribute("value") for o in
               driver.find_elements("css selector", "#model option")]
    assert offered == [*sorted(shipped_names(), key=lambda n: n != "default"), "plain", "steer"]
    box = driver.find_element("id", "controls-box")
    choose(driver, "model", "plain")
    assert not box.is_displayed()  # a model without controls shows none
    assert driver.find_elements("css selector", "[data-control]") == []
    choose(driver, "model", steered["id"])
    assert box.is_displayed()
    shown = [e.get_attribute("data-control") for e in
             driver.find_elements("css selector", "[data-control]")]
    assert shown == [c["name"] for c in steered["controls"]]
    assert {"density", "key", "style"} <= set(shown)
    styles = steered["takes"]["styles"]
    assert [o.get_attribute("value") for o in
            driver.find_elements("css selector", "#control-style option")] == ["", *styles]
    assert f"style ({', '.join(styles)})" in driver.find_element("id", "model-takes").text
    choose(driver, "control-key", "D minor")
    choose(driver, "control-style", styles[-1])
    set_value(driver, "length", "6")
    set_value(driver, "rng-seed", "3")
    choose(driver, "seed-kind", "none")
    # Draw density over time: low on the left half, high on the right half.
    canvas = driver.find_element("id", "plan")
    width, height = canvas.size["width"], canvas.size["height"]
    (ActionChains(driver).move_to_element_with_offset(canvas, -width // 2 + 35, height // 4)
     .click_and_hold().move_by_offset(width // 2 - 40, 0)
     .move_by_offset(0, -height // 2 + 10).move_by_offset(width // 2 - 5, 0)
     .release().perform())
    segments = json.loads(driver.find_element("id", "plan-json").text)
    assert segments[0]["from"] == 0 and len(segments) >= 2
    densities = [s["density"] for s in segments]
    assert densities[0] < densities[-1] and all(d is not None for d in densities)
    assert int(canvas.get_attribute("data-segments")) == len(segments)
    generate_and_wait(driver, len(results(driver)) + 1)
    if os.environ.get("COMPOSER_SCREENSHOT"):
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(os.environ["COMPOSER_SCREENSHOT"])
    # Clearing the plan sends none.
    driver.find_element("id", "plan-clear").click()
    assert driver.find_element("id", "plan-json").text == "none"
