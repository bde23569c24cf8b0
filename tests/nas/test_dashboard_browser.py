"""`spinenas dashboard` in a real browser: headless Chromium driven by Selenium through the system chromedriver.

One browser session for every check, against a database a surrogate search writes while the page is open: the page
loads, new trials appear within the refresh interval without a reload, the trials table sorts and filters, a click
opens a trial's page, and the browser's console holds no error. Skipped where Chromium or its driver is missing,
except in CI (CI=true), where that fails: `.ci/run` installs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from tests.nas.helpers import cfg_of, finished, run_search

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: The page re-reads the database this often in the test (the command's default is 2 s; the issue asks for 5 s).
REFRESH_S = 1.0
#: How long a change in the database may take to show on the page.
SHOWN_WITHIN_S = 5.0


def _tool(name: str, path: str) -> str | None:
    return path if os.access(path, os.X_OK) else shutil.which(name)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium with its console log kept (Selenium's Service on the system chromedriver: no download)."""
    chromium = _tool("chromium", "/usr/bin/chromium")
    driver_path = _tool("chromedriver", "/usr/bin/chromedriver")
    if chromium is None or driver_path is None:
        why = "Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: {why}")
        pytest.skip(why)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,768",
                "--disable-gpu", "--enable-unsafe-swiftshader"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(what: str, check, timeout: float):
    """Polls `check()` until it returns something truthy (returned), or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except Exception:  # noqa: BLE001 - an element not there yet, or replaced by a re-render
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


# The rows of an AG Grid in the order shown (AG Grid places rows by row-index, not by DOM order).
_COLUMN = """
const rows = Array.from(document.querySelectorAll('#trials-table .ag-center-cols-container .ag-row'));
return rows.map(r => [parseInt(r.getAttribute('row-index')), r.querySelector('[col-id="' + arguments[0] + '"]')])
           .filter(x => x[1] !== null).sort((a, b) => a[0] - b[0]).map(x => x[1].innerText);
"""


def test_the_dashboard_follows_a_running_search_in_a_browser(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    db = str(tmp_path / "r.db")
    # 16 trials of 0.6 s each, two at a time: about 5 s of search while the page watches.
    cfg = cfg_of(trials=16, workers=2, duration=0.6, asha={"rungs": (100,), "eta": 2, "min_results": 2})
    errors: list[BaseException] = []

    def search() -> None:
        try:
            run_search(tmp_path, cfg, name="s", tensorboard=False)[0].close()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    worker = threading.Thread(target=search, daemon=True)
    worker.start()
    _wait("the search's first trial in the database", lambda: finished(db, "s") >= 1, 30)
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", "--db", db, "--port", "0", "--refresh",
                             str(REFRESH_S)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[2]
        assert url.startswith("http://127.0.0.1:"), url
        browser.get(url)
        # The overview lists the search; a click on it opens its trials.
        cell = _wait("the search in the overview", lambda: browser.find_element(
            By.CSS_SELECTOR, '#searches-table .ag-cell[col-id="name"]'), 15)
        assert cell.text == "s"
        cell.click()
        _wait("the trials tab", lambda: browser.find_element(By.ID, "trials-count"), 10)

        # Live: every trial the database holds as finished is on the page within the interval, without a reload.
        def shown() -> int:
            done = [s for s in browser.execute_script(_COLUMN, "status") if s in ("completed", "pruned")]
            return len(done)

        seen = []
        while len(seen) < 3 and not (seen and seen[-1] == 16):
            in_db = finished(db, "s")
            _wait(f"{in_db} finished trials on the page", lambda n=in_db: shown() >= n, SHOWN_WITHIN_S)
            seen.append(in_db)
            _wait("another trial finishing", lambda n=in_db: finished(db, "s") > n or finished(db, "s") == 16, 20)
        worker.join(30)
        assert not errors, errors
        assert len(set(seen)) >= 2 or seen[-1] == 16, seen  # the page followed the search as it went
        _wait("all 16 trials on the page", lambda: shown() == 16 and len(browser.execute_script(_COLUMN, "index"))
              == 16, SHOWN_WITHIN_S)

        # Sorting by reward, both ways, and filtering by status.
        header = browser.find_element(By.CSS_SELECTOR, '#trials-table .ag-header-cell[col-id="reward"] '
                                                       '.ag-header-cell-label')

        def rewards() -> list[float]:
            return [float(x) for x in browser.execute_script(_COLUMN, "reward")]

        header.click()
        _wait("rewards sorted up", lambda: rewards() == sorted(rewards()) and len(rewards()) == 16, 5)
        header.click()
        _wait("rewards sorted down", lambda: rewards() == sorted(rewards(), reverse=True), 5)
        status_filter = browser.find_element(By.CSS_SELECTOR, '#trials-table input[aria-label="status Filter Input"]')
        status_filter.send_keys("pruned")
        _wait("only pruned trials", lambda: set(browser.execute_script(_COLUMN, "status")) == {"pruned"}, 5)
        status_filter.send_keys(Keys.BACKSPACE * len("pruned"))  # typed away: clear() fires no input event
        _wait("every trial again", lambda: len(browser.execute_script(_COLUMN, "index")) == 16, 5)

        # A click on a row opens that trial's page: its title, its diagram, its export command.
        index = browser.execute_script(_COLUMN, "index")[0]
        browser.find_element(By.CSS_SELECTOR, '#trials-table .ag-row[row-index="0"] .ag-cell[col-id="index"]').click()
        _wait("the trial's page", lambda: "/trial/" in browser.current_url, 5)
        title = _wait("its title", lambda: browser.find_element(By.CSS_SELECTOR, "#trial-content h2").text, 10)
        assert title == f"trial {index} of s"
        _wait("its diagram", lambda: browser.find_element(By.CSS_SELECTOR, "#trial-content img.diagram"), 10)
        assert "spinenas export " in browser.find_element(By.ID, "trial-content").text

        # Nothing went wrong in the page: no error in the console, no AG Grid or React warning.
        log = browser.get_log("browser")
        bad = [e for e in log if e["level"] == "SEVERE" or (e["level"] == "WARNING" and e["source"] == "console-api")]
        assert not bad, bad
    finally:
        proc.terminate()
        proc.wait(10)
        worker.join(30)
