"""The hello page in a real headless Chromium (Debian's, driven by Playwright): the
progress reaches 100% and the done notice appears, without a reload."""

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import BASE_DIR

SCREENSHOT = BASE_DIR / ".run" / "hello-done.png"
# No call home: this machine's network is closed, and a test should not depend on one.
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("The browser test needs Chromium: apt install chromium (.ci/run does).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=QUIET)
        yield browser
        browser.close()


def test_the_hello_page_follows_the_notification_until_it_is_done(
    browser, project_env, seed_customers, smtp_server, web, start_worker
):
    project_env["NOTIFY_BATCH_SIZE"] = "50"
    seed_customers(300)
    smtp_server.delay = 0.005
    start_worker("worker", "--concurrency=2")
    page = browser.new_page()

    page.goto(web.url("/playground/hello/"))

    expect(page.locator("h1")).to_have_text("Hello Mosh")
    expect(page.locator(".done")).to_be_visible(timeout=60_000)
    expect(page.locator(".sent")).to_have_text("300")
    expect(page.locator(".total")).to_have_text("300")
    assert page.locator("progress").evaluate("bar => bar.value / bar.max") == 1
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT)
