"""The page's harmonize view in a real headless browser (the fixtures of test_browser.py):
type a melody, harmonize, see the roll, re-roll a voice and a span, and a bad melody's
one-line error."""

from __future__ import annotations

from test_browser import browser, server, set_value, wait_for  # noqa: F401 (fixtures)


def ink(driver) -> int:
    return driver.execute_script("""
        const c = document.getElementById('h-roll'), g = c.getContext('2d');
        const px = g.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) if (px[i + 3] > 0) n++;
        return n;""")


def test_harmonize_view(browser, server):  # noqa: F811
    driver = browser
    driver.get(server + "/")
    wait_for(driver, lambda d: d.find_elements("id", "h-go"))
    status = driver.find_element("id", "h-status")
    set_value(driver, "h-melody", "G4:1 A4:1 B4:2 A4:1 G4:1 F#4:2 G4:4")
    set_value(driver, "h-passes", "4")
    set_value(driver, "h-seed", "1")
    driver.find_element("id", "h-go").click()
    wait_for(driver, lambda d: "voices" in status.text or "Error" in status.text)
    assert status.text == "4 voices, 3 bars", status.text
    first = ink(driver)
    assert first > 500
    assert driver.find_element("id", "h-download").get_attribute("href").startswith("blob:")
    assert driver.find_element("id", "h-voice").get_attribute("value") == "Alto"
    driver.execute_script("document.getElementById('h-status').textContent = ''")
    driver.find_element("id", "h-reroll-voice").click()
    wait_for(driver, lambda d: "voices" in status.text or "Error" in status.text)
    assert status.text == "4 voices, 3 bars" and ink(driver) > 500
    driver.execute_script("document.getElementById('h-status').textContent = ''")
    driver.find_element("id", "h-reroll-span").click()
    wait_for(driver, lambda d: "voices" in status.text or "Error" in status.text)
    assert status.text == "4 voices, 3 bars"
    set_value(driver, "h-melody", "C4+E4:1")
    driver.find_element("id", "h-go").click()
    wait_for(driver, lambda d: "Error" in status.text)
    assert "chord" in status.text
