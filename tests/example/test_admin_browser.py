"""The outbox admin in a real browser: headless Chromium logs in and reads the outbox list.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when
it can); skips and says so otherwise. Saves a screenshot under ``test-output/``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils import formats, timezone

from django_ensign.models import OutboxEvent, OutboxStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1920,1080",
)
NACK_ERROR = "topic 'weather' is read-only: writes are disabled"


def _binary(*names: str) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium driven by Selenium, with a profile of its own."""
    chromium = _binary("chromium", "chromium-browser", "google-chrome")
    driver_path = _binary("chromedriver")
    if not chromium or not driver_path:
        pytest.skip(
            "headless Chromium is not installed: apt-get install -y chromium chromium-driver"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def site_url() -> Iterator[str]:
    """The test project served on a free loopback port, admin CSS and JS included.

    pytest-django's ``live_server`` serves static files only when
    ``django.contrib.staticfiles`` is installed; this serves them from the apps'
    ``static/`` folders either way, so the screenshot shows the admin as users see it.
    """
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.test.testcases import LiveServerThread

    thread = LiveServerThread("127.0.0.1", static_handler=StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield f"http://127.0.0.1:{thread.port}"
    finally:
        thread.terminate()


def _row(**fields: Any) -> OutboxEvent:
    defaults: dict[str, Any] = {
        "event_id": uuid.uuid4().hex[:26].upper(),
        "topic": "weather",
        "data": b'{"station": "Reykjavik", "temperature": 4.5}',
        "type_name": "ReadingCreated",
        "type_version": "1.0.0",
    }
    return OutboxEvent.objects.create(**{**defaults, **fields})


def _shown(value: dt.datetime) -> str:
    """A datetime as the admin's change list prints it."""
    return str(formats.localize(timezone.localtime(value)))


def test_outbox_list_shows_commit_time_of_acked_and_error_of_nacked_events(
    browser: Any, site_url: str, admin_user: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    committed = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=3)
    acked = _row(status=OutboxStatus.ACKED, attempts=1, acked_at=committed)
    nacked = _row(
        status=OutboxStatus.RETRYING,
        type_name="ReadingUpdated",
        attempts=2,
        nack_code=3,
        nack_error=NACK_ERROR,
        last_error=NACK_ERROR,
    )
    pending = _row(type_name="ReadingDeleted")

    browser.get(f"{site_url}/admin/login/?next=/admin/django_ensign/outboxevent/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    table = WebDriverWait(browser, 30).until(
        expected_conditions.presence_of_element_located((By.ID, "result_list"))
    )
    # Fold the app list away so every column fits in the screenshot.
    browser.find_element(By.ID, "toggle-nav-sidebar").click()

    def cell(row: OutboxEvent, field: str) -> str:
        found = table.find_element(
            By.XPATH,
            f".//tr[.//*[normalize-space()='{row.event_id}']]/*[contains(@class, 'field-{field}')]",
        )
        return str(found.text).strip()

    OUTPUT_DIR.mkdir(exist_ok=True)
    browser.save_screenshot(str(OUTPUT_DIR / "admin_outbox_list.png"))

    assert cell(acked, "status_badge") == "acked"
    assert cell(acked, "acked_at") == _shown(committed)
    assert cell(nacked, "status_badge") == "nacked, retrying"
    assert cell(nacked, "nack_error") == NACK_ERROR
    assert cell(nacked, "acked_at") == "-"
    assert cell(pending, "status_badge") == "pending"
    assert "acked: 1" in browser.find_element(By.CLASS_NAME, "ensign-status-counts").text
