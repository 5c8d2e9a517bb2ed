"""Renders a local HTML file in headless Chromium (selenium) and reports what it shows.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them)
and the ``selenium`` test extra; tests call ``require_chromium()`` to skip without them.
"""
import importlib.util
import shutil
from pathlib import Path

import pytest

SKIP_REASON = ("headless Chromium not available: install the Debian packages chromium and "
               "chromium-driver (.ci/run does)")
MAX_SCREENSHOT_HEIGHT = 16384  # Chromium cannot capture taller windows in one piece
WIDTH = 1280
PAGE_LOAD_SECONDS = 30

# Everything the page shows, read in one round trip once it has loaded.
_PAGE_STATE = """
const closed = Array.from(document.querySelectorAll('details:not([open])'));
closed.forEach(d => d.open = true);
const shown = Array.from(document.images, e => e.getBoundingClientRect().width);
closed.forEach(d => d.open = false);
return {
  title: document.title,
  h2: Array.from(document.querySelectorAll('h2'), e => e.textContent.trim()),
  images: Array.from(document.images, (e, i) => ({
    complete: e.complete, naturalWidth: e.naturalWidth, naturalHeight: e.naturalHeight,
    shownWidth: shown[i], scheme: e.src.split(':', 1)[0],
    mime: e.src.startsWith('data:') ? e.src.slice(5, e.src.indexOf(';')) : ''})),
  ids: Array.from(document.querySelectorAll('[id]'), e => e.id),
  toc: Array.from(document.querySelectorAll('nav a[href^="#"]'),
                  e => e.getAttribute('href').slice(1)),
  resources: performance.getEntriesByType('resource').map(e => e.name),
  scrollHeight: document.documentElement.scrollHeight,
  windowFrame: window.outerHeight - window.innerHeight,
};
"""


def chromium_available() -> bool:
    """Whether ``chromium``, ``chromedriver`` and selenium are all installed."""
    return bool(shutil.which("chromium") and shutil.which("chromedriver")
                and importlib.util.find_spec("selenium"))


def require_chromium():
    """Skips the calling test when headless Chromium cannot be driven here."""
    if not chromium_available():
        pytest.skip(SKIP_REASON)


def _driver():
    """A headless Chromium driven by the system chromedriver (no downloads)."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", f"--window-size={WIDTH},800"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
    return driver


def render_in_chromium(path, screenshot_path=None) -> dict:
    """Opens ``path`` as a ``file://`` URL and returns what the loaded page holds.

    Keys: ``title``; ``h2`` (heading texts); ``images`` (per ``<img>``: ``complete``,
    ``naturalWidth``, ``naturalHeight``, ``shownWidth`` (CSS px on the page, collapsed
    sections opened), ``scheme`` of its src, e.g. ``"data"``, ``mime`` of a data URL); ``ids``
    (every element id); ``toc`` (the ids that ``<nav>`` links point at); ``resources``
    (URLs of loaded sub-resources; ``data:`` images are not listed); ``scrollHeight``;
    ``windowFrame`` (window height outside the viewport). With ``screenshot_path``, also
    saves a PNG of the whole page (viewport as tall as the document, at most
    ``MAX_SCREENSHOT_HEIGHT``).
    """
    from selenium.webdriver.support.wait import WebDriverWait

    driver = _driver()
    try:
        driver.get(Path(path).resolve().as_uri())
        # On a busy machine chromedriver can return while a large page is still being parsed
        # (seen with Chromium 150: 3 of 8 sections present): wait for the load to finish.
        WebDriverWait(driver, PAGE_LOAD_SECONDS).until(
            lambda d: d.execute_script("return document.readyState") == "complete")
        state = driver.execute_script(_PAGE_STATE)
        if screenshot_path is not None:
            height = min(state["scrollHeight"], MAX_SCREENSHOT_HEIGHT)
            driver.set_window_size(WIDTH, height + state["windowFrame"])
            if not driver.save_screenshot(str(screenshot_path)):
                raise RuntimeError(f"Chromium could not save a screenshot to {screenshot_path}")
        return state
    finally:
        driver.quit()
