"""Headless Chromium through Selenium, for the site's browser test and its screenshots (`pip install .[dev]`,
Debian's `chromium` and `chromium-driver`). Selenium is given both binaries, so it never tries to download one."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import VismechError

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def browser_binaries() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is not installed."""
    browser = next((found for name in CHROMIUM if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium(width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver that keeps the console's messages (`driver.get_log("browser")`)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise VismechError("the browser check needs selenium: install vismech with its dev extra (`scripts/setup.sh "
                           "dev`)") from None
    found = browser_binaries()
    if found is None:
        raise VismechError("the browser check needs Debian's chromium and chromium-driver: "
                           "`apt-get install chromium chromium-driver`")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--allow-file-access-from-files", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=found[1]), options=options)


def page_url(path: Path) -> str:
    return Path(path).resolve().as_uri()
