"""Headless Chromium (Debian's package) driven by Playwright, for the tests that open the real
MLflow UI. Needs scripts/ui-deps.sh; without it `missing(...)`: a skip locally, a failure under
TFREPRO_REQUIRE_DOCKER=1. The `browser_page` fixture (registered in tests/conftest.py)."""

import os
import shutil
import tempfile

import pytest

from tests.helpers.requirements import missing

CHROMIUM = os.environ.get("TFREPRO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture
def browser_page():
    executable = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not executable:
        missing("chromium is not installed (run scripts/ui-deps.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (run scripts/ui-deps.sh)")
    profile = tempfile.mkdtemp(prefix="tfrepro-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1100},
            )
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def close_assistant(page):
    """MLflow 3's assistant panel, when it opens over the page."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()
