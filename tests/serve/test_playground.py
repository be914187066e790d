"""The playground page in a real browser: headless Chromium driven by Selenium.

Needs Debian's `chromium` and `chromium-driver` packages (`.ci/run` installs them); skipped
with the reason when they are absent. docs/playground.png was taken by this test, serving a
model trained on Tiny Shakespeare (`charlm train tinyshakespeare/input.txt --hidden 256
--max-time 10m --threads 1`: 2,267 steps, validation perplexity 4.30):

    CHARLM_PLAYGROUND_MODEL=checkpoints/shakespeare \
    CHARLM_PLAYGROUND_SCREENSHOT=docs/playground.png pytest tests/serve/test_playground.py
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from charlm.sampling import load
from charlm.serve.config import ServeConfig
from tests.serve.conftest import LiveServer, model_set
from tests.tiny_models import untrained_names

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,  # a browser starts for each test
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
    ),
]
WAIT = 60  # seconds, at most, for anything the page does (the machine may be busy)
# Headless, and without the background work (updates, on-device models) a browser would do.
QUIET_CHROMIUM = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-features=OptimizationGuideModelDownloading,OnDeviceModelService",
    "--no-first-run",
)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in QUIET_CHROMIUM:
        options.add_argument(argument)
    options.add_argument("--window-size=1280,900")
    # Chromium leaves its singleton-socket directory in TMPDIR when the driver ends it: in
    # the test's own directory, not a new one in /tmp on every run.
    scratch = {**os.environ, "TMPDIR": str(tmp_path)}
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER, env=scratch)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(sampler):
    path = os.environ.get("CHARLM_PLAYGROUND_MODEL")
    name, served = ("tiny", sampler) if not path else (Path(path).name, load(path, device="cpu"))
    config = ServeConfig(max_tokens=100_000)
    with LiveServer(model_set(config, **{name: served}), config) as live:
        live.model = name
        yield live


def output_text(browser) -> str:
    return browser.find_element(By.ID, "output").text


def status(browser) -> str:
    return browser.find_element(By.ID, "status").text


def set_number(browser, element_id: str, value: str) -> None:
    box = browser.find_element(By.ID, element_id)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(value)


def test_generate_streams_text_in_and_stop_ends_it(browser, server, tmp_path):
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == server.model)
    assert "parameters" in browser.find_element(By.ID, "model-info").text
    prefix = browser.find_element(By.ID, "prefix")
    prefix.clear()
    prefix.send_keys("the ")
    set_number(browser, "length", "100000")
    prefix.send_keys(Keys.CONTROL, Keys.ENTER)  # the keyboard starts it
    wait.until(lambda b: len(output_text(b)) > 40)  # text arrives while it is being written
    assert status(browser).startswith("Writing")
    assert not browser.find_element(By.ID, "stop").get_attribute("disabled")
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda b: status(b).startswith("Stopped"))
    stopped_at = output_text(browser)
    assert server.wait_idle(server.model) < 5  # the server stopped drawing too
    time.sleep(0.3)
    assert output_text(browser) == stopped_at
    assert browser.find_element(By.ID, "generate").is_enabled()


def test_a_seeded_text_with_shading_and_a_phone_width(browser, server, tmp_path):
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == server.model)
    if server.model == "tiny":
        prefix = browser.find_element(By.ID, "prefix")
        prefix.clear()
        prefix.send_keys("the ")
    set_number(browser, "length", "400")
    set_number(browser, "temperature", "0.6")
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "shade").click()
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: status(b).startswith("Done"))
    assert "seed 7" in status(browser)
    pieces = browser.find_elements(By.CSS_SELECTOR, "#output.shaded .piece")
    assert len(pieces) == 400
    shades = {p.value_of_css_property("background-color") for p in pieces[:200]}
    assert len(shades) > 5  # each piece shaded by its own probability
    assert "likeliest" in pieces[0].get_attribute("title")
    first = output_text(browser)
    browser.find_element(By.ID, "generate").click()  # same seed, same text
    wait.until(lambda b: status(b).startswith("Done"))
    assert output_text(browser) == first
    browser.execute_script("document.getElementById('output').scrollTop = 0")
    screenshot = tmp_path / "playground.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("CHARLM_PLAYGROUND_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["CHARLM_PLAYGROUND_SCREENSHOT"])
    phone = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", phone)
    assert browser.execute_script("return window.innerWidth") == 390
    overflow = "return document.documentElement.scrollWidth - window.innerWidth"
    assert browser.execute_script(overflow) <= 0  # nothing wider than the phone
    select = browser.find_element(By.ID, "model")
    assert select.size["width"] >= 150  # the model's name stays readable


@pytest.fixture
def labelled_server():
    config = ServeConfig(max_tokens=1000)
    with LiveServer(model_set(config, names=untrained_names()), config) as live:
        live.model = "names"
        yield live


def test_a_labelled_model_writes_a_chosen_label_and_classifies(browser, labelled_server):
    browser.get(labelled_server.url + "/")
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda b: b.find_element(By.ID, "label").is_displayed())
    # The Length box offers what this server writes at most (its --max-tokens, 1000 here).
    wait.until(lambda b: b.find_element(By.ID, "length").get_attribute("max") == "1000")
    choices = browser.find_elements(By.CSS_SELECTOR, "#label option")
    assert [c.get_attribute("value") for c in choices] == ["ab", "xyz"]
    browser.find_element(By.CSS_SELECTOR, "#label option[value='xyz']").click()
    browser.find_element(By.ID, "seed").send_keys("2")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: status(b).startswith("Done"))
    assert browser.find_element(By.ID, "prefix").get_attribute("value") == ""  # no scene
    assert "a whole example" in status(browser)  # ended by its end token, not a stop string
    assert set(output_text(browser).lower()) <= set("abxyz")  # one name, of the model's letters
    set_number(browser, "guidance", "2")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: status(b).startswith("Done"))
    guided = untrained_names().generate(label="xyz", seed=2, guidance=2.0)
    assert output_text(browser) == guided  # the page asked for the guided example
    text = browser.find_element(By.ID, "classify-text")
    text.send_keys("Xyzzy")
    browser.find_element(By.ID, "classify").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#classes li")) == 2)
    rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#classes li")]
    assert {row.split()[0] for row in rows} == {"ab", "xyz"}
    shares = [float(row.split()[-1].rstrip("%")) for row in rows]
    assert sum(shares) == pytest.approx(100, abs=0.2)  # the two probabilities, in percent


def test_a_classifier_is_offered_for_classifying_only(browser):
    config = ServeConfig(max_tokens=1000)
    models = model_set(config, names=untrained_names(), clf=untrained_names("classify"))
    with LiveServer(models, config) as live:
        browser.get(live.url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda b: b.find_element(By.ID, "generate").is_displayed())
        browser.find_element(By.CSS_SELECTOR, "#model option[value='clf']").click()
        wait.until(lambda b: not b.find_element(By.ID, "generate").is_displayed())
        assert browser.find_element(By.ID, "model-info").text.endswith("a classifier")
        assert not browser.find_element(By.ID, "output").is_displayed()
        browser.find_element(By.ID, "classify-text").send_keys("Xyzzy", Keys.CONTROL, Keys.ENTER)
        assert status(browser) == ""  # Ctrl+Enter did not try to write
        browser.find_element(By.ID, "classify").click()
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#classes li")) == 2)
        browser.find_element(By.CSS_SELECTOR, "#model option[value='names']").click()
        wait.until(lambda b: b.find_element(By.ID, "generate").is_displayed())


def test_an_emptied_number_box_is_refused_with_what_it_must_hold(browser, server):
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == server.model)
    if server.model == "tiny":  # a beginning it can read: only the emptied box is wrong
        prefix = browser.find_element(By.ID, "prefix")
        prefix.clear()
        prefix.send_keys("the ")
    for box, says in (
        ("temperature", "The temperature must be a number of 0 or more"),
        ("length", "The length must be a whole number of 1 or more"),
        ("top-p", "Top-p must be a number above 0"),
    ):
        kept = browser.find_element(By.ID, box).get_attribute("value")
        set_number(browser, box, Keys.BACKSPACE)  # emptied: Number("") would send 0
        browser.find_element(By.ID, "generate").click()
        assert status(browser).startswith(says)
        assert "error" in browser.find_element(By.ID, "status").get_attribute("class")
        assert browser.switch_to.active_element.get_attribute("id") == box
        assert output_text(browser) == ""  # nothing was asked for
        set_number(browser, box, kept)
    set_number(browser, "length", "0")
    browser.find_element(By.ID, "generate").click()
    assert status(browser).startswith("The length must be a whole number of 1 or more")


def test_characters_the_model_never_saw_have_a_setting_the_error_points_to(
    browser, server, sampler
):
    if server.model != "tiny":
        pytest.skip("the tiny model's vocabulary lacks the character")
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, WAIT)
    wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "tiny")
    options = browser.find_elements(By.CSS_SELECTOR, "#unknown option")
    # The char tokenizer of the tiny model has no <unk>: refusing or skipping, refusing first.
    assert [o.get_attribute("value") for o in options] == ["error", "skip"]
    assert browser.find_element(By.ID, "unknown").get_attribute("value") == "error"
    prefix = browser.find_element(By.ID, "prefix")
    prefix.clear()
    prefix.send_keys("the €")
    set_number(browser, "length", "30")
    browser.find_element(By.ID, "seed").send_keys("7")
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: "never saw" in status(b))
    assert "set Unknown characters to “leave them out”" in status(browser)
    assert 'unknown"' not in status(browser)  # the API's field, which the page has not
    browser.find_element(By.CSS_SELECTOR, "#unknown option[value='skip']").click()
    browser.find_element(By.ID, "generate").click()
    wait.until(lambda b: status(b).startswith("Done"))
    written = output_text(browser).removeprefix("the €")
    assert "the " + written == sampler.generate("the ", 30, temperature=0.8, seed=7)


def test_choosing_another_model_clears_the_text_and_the_message(browser, sampler):
    config = ServeConfig(max_tokens=100_000)
    with LiveServer(model_set(config, tiny=sampler, names=untrained_names()), config) as live:
        browser.get(live.url + "/")
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda b: b.find_element(By.ID, "model").get_attribute("value") == "tiny")
        prefix = browser.find_element(By.ID, "prefix")
        prefix.clear()
        prefix.send_keys("the ")
        set_number(browser, "length", "20")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda b: status(b).startswith("Done"))
        assert output_text(browser)
        browser.find_element(By.CSS_SELECTOR, "#model option[value='names']").click()
        wait.until(lambda b: b.find_element(By.ID, "label").is_displayed())
        assert output_text(browser) == "" and status(browser) == ""
        # An error about one model is gone with it too.
        set_number(browser, "temperature", Keys.BACKSPACE)
        browser.find_element(By.ID, "generate").click()
        assert status(browser).startswith("The temperature must be")
        browser.find_element(By.CSS_SELECTOR, "#model option[value='tiny']").click()
        wait.until(lambda b: status(b) == "")
        # A text being written stops when another model is chosen, and leaves nothing.
        set_number(browser, "temperature", "0.8")
        set_number(browser, "length", "100000")
        browser.find_element(By.ID, "generate").click()
        wait.until(lambda b: len(output_text(b)) > 40)
        browser.find_element(By.CSS_SELECTOR, "#model option[value='names']").click()
        assert live.wait_idle("tiny") < 5  # the server stopped drawing
        time.sleep(0.3)
        assert output_text(browser) == "" and status(browser) == ""
        assert browser.find_element(By.ID, "generate").is_enabled()
