"""The page in a real browser: Debian's Chromium driven by Selenium against a real `hushnet serve`.

Uploads a real dev recording, waits for the result, checks both players' durations and the drawn
spectrograms, moves the dry/wet slider, and saves the screenshot docs/serve.md shows.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[dev]')")
pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "chromium and chromium-driver not found (apt-get install chromium chromium-driver; .ci/run does this)",
        allow_module_level=True,
    )

import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from hushnet.denoiser import Denoiser  # noqa: E402
from hushnet.serve import renders  # noqa: E402
from hushnet.serve.app import create_app  # noqa: E402
from hushnet.serve.config import ServeConfig  # noqa: E402

from helpers import DEV, needs_shared  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RECORDING = DEV / "noisy" / "p287_002.flac"
WAIT_SECONDS = 120  # a generous ceiling for a loaded CI machine, not a speed check


@pytest.fixture(scope="module")
def server():
    """The real app (shipped model) under uvicorn on a free loopback port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(Denoiser.from_pretrained(), ServeConfig(port=port))
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        thread.join(0.05)
        assert thread.is_alive(), "the server did not start"
    yield f"http://127.0.0.1:{port}", app.state.store
    instance.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="hushnet-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={profile}",
        "--window-size=1200,1000",
    ):
        options.add_argument(flag)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def canvas_stats(driver, card, side: str) -> dict:
    """Mean and spread of a spectrogram canvas's pixels, read back from the browser."""
    return driver.execute_script(
        """const c = arguments[0].querySelector('.' + arguments[1] + ' canvas');
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
           let sum = 0, sq = 0, n = 0;
           for (let i = 0; i < d.length; i += 4) { const v = (d[i] + d[i + 1] + d[i + 2]) / 3; sum += v; sq += v * v; n++; }
           const mean = sum / n; return {mean: mean, std: Math.sqrt(sq / n - mean * mean), width: c.width, drawn: c.dataset.drawn, dry: c.dataset.dry};""",
        card,
        side,
    )


@needs_shared
def test_upload_listen_compare_mix_and_download(server, browser):
    url, store = server
    frames, rate = sf.info(str(RECORDING)).frames, sf.info(str(RECORDING)).samplerate
    seconds = frames / rate
    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda d: "model" in d.find_element(By.ID, "health").text)
    browser.find_element(By.ID, "picker").send_keys(str(RECORDING))
    card = WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".card.done, .card.failed")
    )
    assert "done" in card.get_attribute("class"), card.text

    players = card.find_elements(By.CSS_SELECTOR, "audio")
    durations = WebDriverWait(browser, 30).until(
        lambda d: (
            [p.get_property("duration") for p in players]
            if all((p.get_property("duration") or 0) > 0 for p in players)
            else None
        )
    )
    assert all(abs(duration - seconds) < 0.01 for duration in durations), (durations, seconds)

    WebDriverWait(browser, 30).until(
        lambda d: canvas_stats(d, card, "input")["drawn"] == "1" and canvas_stats(d, card, "output")["drawn"] == "1"
    )
    before = {side: canvas_stats(browser, card, side) for side in ("input", "output")}
    for stats in before.values():
        assert stats["std"] > 10 and 5 < stats["mean"] < 250, stats  # a picture, not a blank canvas

    RESULTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(RESULTS / "serve_page.png"))  # for docs/serve.md: the result as it first appears

    # A/B at the same position: the original takes over where the denoised one was.
    browser.execute_script("arguments[0].currentTime = 1.0;", players[1])
    card.find_element(By.CSS_SELECTOR, ".ab").click()
    assert abs(players[0].get_property("currentTime") - 1.0) < 0.3
    assert card.find_element(By.CSS_SELECTOR, ".ab").get_attribute("aria-pressed") == "true"
    browser.execute_script("arguments[0].pause(); arguments[1].pause();", *players)

    # Dry/wet: keyboard on the slider (6 steps of 5 %), then the output, its picture and the download follow.
    slider = card.find_element(By.CSS_SELECTOR, ".dry")
    slider.send_keys(*([Keys.ARROW_RIGHT] * 6))
    WebDriverWait(browser, 30).until(lambda d: "dry=0.3" in players[1].get_attribute("src"))
    assert "30 % original" in card.find_element(By.CSS_SELECTOR, ".dry-value").text
    assert "dry=0.3" in card.find_element(By.CSS_SELECTOR, ".download").get_attribute("href")
    WebDriverWait(browser, 30).until(lambda d: canvas_stats(d, card, "output")["dry"] == "0.3")
    WebDriverWait(browser, 30).until(lambda d: abs((players[1].get_property("duration") or 0) - seconds) < 0.01)
    after = canvas_stats(browser, card, "output")
    assert after["mean"] > before["output"]["mean"]  # mixing the noisy input back brightens the picture
    zip_link = browser.find_element(By.CSS_SELECTOR, ".download-all")
    assert zip_link.is_displayed() and "dry=0.3" in zip_link.get_attribute("href")

    # The download the page offers is the 30 % mix: fetch it through the page's own link.
    job_id = players[1].get_attribute("src").split("/jobs/")[1].split("/")[0]
    entry = store.jobs[job_id].files[0]
    mixed, _ = sf.read(str(renders.mixed(store, store.jobs[job_id], entry, 0.3)), dtype="float32")
    noisy, _ = sf.read(str(RECORDING), dtype="float32")
    wet, _ = sf.read(str(entry.output), dtype="float32")
    assert mixed.shape == noisy.shape and np.abs(mixed - (wet + 0.3 * (noisy - wet))).max() < 2 / 32768

    # Phone width: one column, nothing wider than the screen.
    browser.set_window_size(390, 1100)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
    assert overflow <= 0, f"the page is {overflow} px wider than a phone screen"
    browser.save_screenshot(str(RESULTS / "serve_page_phone.png"))
    browser.set_window_size(1200, 1000)

    browser.find_element(By.CSS_SELECTOR, ".batch .delete").click()
    WebDriverWait(browser, 30).until(lambda d: job_id not in store.jobs and not (store.root / job_id).exists())


def test_a_bad_file_shows_its_error_on_the_page(server, browser, tmp_path):
    url, _ = server
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio\n" * 20)
    browser.get(url + "/")
    browser.find_element(By.ID, "picker").send_keys(str(bad))
    card = WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: d.find_element(By.CSS_SELECTOR, ".card.done, .card.failed")
    )
    assert "failed" in card.get_attribute("class")
    assert "error: not a readable audio file" in card.find_element(By.CSS_SELECTOR, ".status").text
