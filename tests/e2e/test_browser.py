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

import pytest

from cmal.data.generate import generate_split
from tests.service.test_process import start

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _require_browser() -> None:
    if Path(CHROMIUM).exists() and Path(DRIVER).exists():
        return
    message = "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.slow
def test_page_grounds_an_expression_and_draws_the_box(tiny_exported: Path, tmp_path: Path) -> None:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    generate_split(tmp_path / "shapes", seed=8, num_images=1, split="test", progress=False)
    picture = tmp_path / "shapes" / "images" / "000000.png"
    proc, url = start(tiny_exported)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp()}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        driver.get(url + "/")
        assert driver.title == "CMAL serving"
        driver.find_element(By.ID, "image").send_keys(str(picture))
        WebDriverWait(driver, 10).until(
            lambda d: d.execute_script("return document.getElementById('canvas').width") > 256
        )
        Select(driver.find_element(By.ID, "task")).select_by_value("grounding")
        text = driver.find_element(By.ID, "text")
        text.clear()
        text.send_keys("the large circle")
        driver.find_element(By.ID, "send").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "result").get_attribute("data-done") == "grounding"
        )
        result = json.loads(driver.find_element(By.ID, "result").text)
        assert len(result["box"]) == 4 and result["model_version"]
        drawn = json.loads(driver.find_element(By.ID, "canvas").get_attribute("data-box"))
        assert drawn == result["box"]
        # the box outline is really painted: magenta pixels on its top edge
        pixel = driver.execute_script(
            """const c = document.getElementById('canvas'), s = c.width / 128, b = JSON.parse(c.dataset.box);
               const x = Math.round((b[0] + b[2]) / 2 * s), y = Math.round(b[1] * s);
               return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data);"""
        )
        assert pixel[:3] == [255, 0, 255]
        driver.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("CMAL_SCREENSHOT"):
            shutil.copyfile(tmp_path / "page.png", os.environ["CMAL_SCREENSHOT"])
        assert (tmp_path / "page.png").stat().st_size > 1000
    finally:
        driver.quit()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
