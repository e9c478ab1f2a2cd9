"""The page at ``/`` in headless Chromium: upload a Shapes image, ground an expression, see the box.

Needs Debian's chromium and chromium-driver (``.ci/run`` installs them). Without them the test is
skipped on a developer machine and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import httpx
import pytest

from cmal.data.generate import generate_split
from cmal.tasks import ROUTES
from tests.service.test_process import start
from tests.tools import missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _require_browser() -> None:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        missing("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")


def chrome(offline: bool = False):  # type: ignore[no-untyped-def]
    """Headless Chromium; ``offline``: every host but 127.0.0.1 fails to resolve (an air gap)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
        options.add_argument(flag)
    if offline:
        options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


@pytest.mark.slow
def test_api_docs_render_with_no_network(tiny_exported: Path) -> None:
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = start(tiny_exported)
    driver = chrome(offline=True)
    try:
        for page in ("/docs", "/redoc"):
            driver.get(url + page)
            if page == "/docs":  # Swagger UI: one block per operation
                WebDriverWait(driver, 30).until(
                    lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock-post")) >= 4
                )
                posts = {
                    e.text
                    for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-post .opblock-summary-path")
                }
                assert {f"/v1/{r}" for r in ROUTES} <= {p.replace("\u200b", "") for p in posts}
            else:  # ReDoc: the operations in its menu
                WebDriverWait(driver, 30).until(lambda d: "/v1/vqa" in d.page_source)
            fetched = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)"
            )
            assert fetched and all(u.startswith(url) for u in fetched), fetched  # nothing external
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_page_answers_every_task_readably(tiny_exported: Path, tmp_path: Path) -> None:
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    generate_split(tmp_path / "shapes", seed=8, num_images=1, split="test", progress=False)
    picture = tmp_path / "shapes" / "images" / "000000.png"
    proc, url = start(tiny_exported)
    driver = chrome()
    try:
        driver.get(url + "/")
        assert driver.title == "CMAL serving"
        canvas = driver.find_element(By.ID, "canvas")
        assert not canvas.is_displayed()  # no empty frame before an image is chosen
        version = httpx.get(f"{url}/v1/models").json()[0]["version"]
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "model").get_attribute("data-version")
        )
        assert version in driver.find_element(By.ID, "model").text
        assert driver.find_element(By.LINK_TEXT, "API docs").get_attribute("href") == f"{url}/docs"

        def ask(task: str, text: str) -> dict[str, object]:
            Select(driver.find_element(By.ID, "task")).select_by_value(task)
            box = driver.find_element(By.ID, "text")
            assert box.get_attribute("value") == "" and box.get_attribute("placeholder")  # a hint per task
            box.send_keys(text)
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 30).until(
                lambda d: d.find_element(By.ID, "result").get_attribute("data-done") == task
            )
            raw = driver.execute_script("return document.getElementById('raw').textContent")
            return json.loads(raw)

        driver.find_element(By.ID, "image").send_keys(str(picture))
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "canvas").is_displayed())
        hints = set()
        for task, text in (("vqa", "how many circles are there?"), ("entailment", "there is a red circle.")):
            answer = ask(task, text)
            hints.add(driver.find_element(By.ID, "text").get_attribute("placeholder"))
            shown = driver.find_element(By.CSS_SELECTOR, "#result .answer").text
            assert shown == (answer["answer"] if task == "vqa" else answer["label"])
            scores = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#result .num")]
            assert scores and all(len(x.split(".")[1]) == 3 for x in scores)  # 3 decimals, not 16

        driver.find_element(By.CSS_SELECTOR, "[data-sample='shapes-2.png']").click()  # a bundled sample
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "canvas").get_attribute("data-image") == "shapes-2.png"
        )
        answer = ask("matching", "a red circle.\na blue box.")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#result .row")) == 2 and len(answer["scores"]) == 2

        answer = ask("grounding", "the large circle")
        assert len(answer["box"]) == 4 and answer["model_version"] == version
        drawn = json.loads(driver.find_element(By.ID, "canvas").get_attribute("data-box"))
        assert drawn == answer["box"]
        # the box outline is really painted: magenta pixels on its top edge
        pixel = driver.execute_script(
            """const c = document.getElementById('canvas'), s = c.width / 128, b = JSON.parse(c.dataset.box);
               const x = Math.round((b[0] + b[2]) / 2 * s), y = Math.round(b[1] * s);
               return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);"""
        )
        assert pixel[:3] == [255, 0, 255]
        assert len(hints) == 2
        driver.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("CMAL_SCREENSHOT"):
            shutil.copyfile(tmp_path / "page.png", os.environ["CMAL_SCREENSHOT"])
        assert (tmp_path / "page.png").stat().st_size > 1000
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_page_takes_an_api_key(tiny_exported: Path) -> None:
    _require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = start(tiny_exported, CMAL_API_KEY="page-key")
    driver = chrome()
    try:
        driver.get(url + "/")
        model = driver.find_element(By.ID, "model")
        WebDriverWait(driver, 10).until(lambda d: "API key" in model.text)
        driver.find_element(By.ID, "key").send_keys("page-key\t")  # tab away: the change event
        WebDriverWait(driver, 10).until(lambda d: model.get_attribute("data-version"))
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
