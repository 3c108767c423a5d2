"""The real-browser tier (``pytest -m browser``): headless Chromium from Debian's ``chromium`` package,
driven by Playwright for Python pointed at that binary (Playwright's own browser download is not reachable
from these machines). ``.ci/run`` installs the package; every test in this folder is marked ``browser``.

Screenshots of each step go to ``$KRONOS_SCREENSHOT_DIR`` (default: a pytest temp folder); the ones shown in
the README are copied from there by hand (``docs/img/ui-prefect-*.png``, ``ui-explorer-csv-error.png``;
the demo-model explorer pictures come from a ``kronos-nightly`` + ``kronos-serve --explorer-*`` run).
Each test module sets ``pytestmark = pytest.mark.browser``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """``$KRONOS_CHROMIUM`` or the first Chromium on PATH."""
    if os.environ.get("KRONOS_CHROMIUM"):
        return os.environ["KRONOS_CHROMIUM"]
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Playwright ``Browser``) for the session."""
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium on PATH: apt-get install chromium (or set KRONOS_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=exe, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium):
    """A fresh page (1280x900) whose console errors are collected in ``page.console_errors``."""
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.console_errors = []
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    d = Path(os.environ.get("KRONOS_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def shoot(screenshot_dir):
    """``shoot(page, "name")`` saves ``<screenshot_dir>/name.png`` (full page) and returns its path."""

    def _shoot(pg, name: str, full_page: bool = True) -> Path:
        path = screenshot_dir / f"{name}.png"
        pg.screenshot(path=str(path), full_page=full_page)
        return path

    return _shoot
