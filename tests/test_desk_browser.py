"""The desk in a real browser (Debian's chromium through Playwright), against Clarion served
by uvicorn on loopback, posting to a fake Mastodon on loopback through Mastodon.py.

What an operator on duty does: log in; compose an Actual notice and read every channel's
preview; find they cannot approve their own notice; a second person approves it and it is
delivered; a Test notice reaches only the test channel; a one-click Cancel goes out threaded
under the alert; a channel whose token was revoked shows `needs_reauth` on the live panel
without a reload. Screenshots of each view go to test-artifacts/desk-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from clarion.channels.base import Channel
from clarion.delivery.dispatcher import Dispatcher
from clarion.desk import accounts
from clarion.store import Store
from clarion.store.schema import channels as channels_t
from clarion.store.schema import deliveries, drafts
from clarion.web.app import create_app
from tests.browser import chromium, require_chromium, serve, shot
from tests.fakes.mastodon import FakeMastodon
from tests.helpers import channels_for, config, rows

require_chromium()
pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
CONFIG = """
[clarion]
publisher_name = "Helena Water Utility"
[api]
stream_poll = 0.2
[desk]
timezone = "America/Denver"
[channels.mastodon]
kind = "mastodon"
instance = "{instance}"
token = {{ env = "DESK_MASTODON_TOKEN" }}
[channels.drills]
kind = "preview"
statuses = ["test", "exercise"]
[[routes]]
channels = ["mastodon", "drills"]
"""


@dataclass
class Desk:
    url: str
    store: Store
    mastodon: FakeMastodon
    channels: dict[str, Channel]
    browser: Any

    def dispatch(self) -> int:
        return Dispatcher(self.store, self.channels).run_until_idle()

    def login(self, name: str) -> Any:
        page = self.browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(self.url + "/desk")
        assert "/desk/login" in page.url  # sent to log in first
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(self.url + "/desk")
        assert page.locator("header .who").inner_text().startswith(name)
        return page


@pytest.fixture
def desk(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Desk]:
    monkeypatch.setenv("DESK_MASTODON_TOKEN", "good-token")
    with FakeMastodon() as mastodon:
        cfg = config(CONFIG.format(instance=mastodon.url), DESK_MASTODON_TOKEN="good-token")
        chans = channels_for(cfg)
        for name, role in [("eddie", "editor"), ("ada", "approver")]:
            accounts.add_user(sqlite_store, name, PASSWORD, role, _now(), by="test")
        with serve(create_app(sqlite_store, cfg, chans)) as url, chromium() as browser:
            yield Desk(url, sqlite_store, mastodon, chans, browser)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def compose_actual(page: Any, d: Desk, headline: str) -> None:
    page.get_by_role("link", name="Compose").click()
    page.get_by_label("Headline").fill(headline)
    page.get_by_label("Description").fill(
        "A water main broke on 5th Street. Boil tap water for one minute before drinking."
    )
    page.get_by_label("Severity").select_option("severe")
    page.get_by_label("Area", exact=True).fill("East Helena")
    # The previews follow the form (desk.js posts it to /desk/preview as it changes).
    page.locator("#preview-body article[data-channel='mastodon'] pre", has_text=headline).wait_for()


def test_compose_approve_deliver_and_cancel(desk: Desk) -> None:
    headline = "Boil water notice for East Helena"
    eddie = desk.login("eddie")
    shot(eddie, "desk-status-empty")
    compose_actual(eddie, desk, headline)
    preview = eddie.locator("#preview-body")
    assert "LIVE" in preview.locator(".verdict").inner_text()
    assert "second person" in preview.locator(".verdict").inner_text()
    masto = preview.locator("article[data-channel='mastodon']")
    assert masto.locator(".counter").inner_text().endswith("/ 500")
    # Every channel the notice goes to has its preview; the test-only channel says why not.
    assert preview.locator("article.pv").count() == 1
    assert "drills: takes Test, Exercise notices only" in preview.locator(
        "details.skipped"
    ).text_content().replace("\n", " ")
    assert eddie.locator("#submit").inner_text() == "Submit for approval"
    shot(eddie, "desk-compose")
    eddie.get_by_role("button", name="Submit").click()
    eddie.wait_for_url(re.compile(r"/desk/drafts/\d+$"))
    assert "awaiting approval" in eddie.locator("#facts").inner_text()
    # The author cannot approve: no button, and the server refuses a forged request too.
    assert eddie.locator("#approve").count() == 0
    assert "a second person" in eddie.locator(".decide").inner_text()
    draft_id = int(eddie.url.rsplit("/", 1)[1])
    csrf = eddie.locator("input[name=csrf]").first.get_attribute("value")
    eddie.request.post(
        f"{desk.url}/desk/drafts/{draft_id}/approve",
        form={"csrf": csrf},
        headers={"Origin": desk.url},
    )
    assert rows(desk.store, drafts)[0].state == "awaiting_approval"
    assert desk.dispatch() == 0 and desk.mastodon.statuses == {}
    shot(eddie, "desk-draft-awaiting")

    # A second person approves it; it is delivered.
    ada = desk.login("ada")
    assert ada.locator("header .count").inner_text() == "1"
    ada.get_by_role("link", name="Approvals").click()
    ada.get_by_role("link", name=f"#{draft_id}").click()
    ada.locator("article[data-channel='mastodon']").wait_for()
    ada.get_by_role("button", name="Approve and send").click()
    ada.wait_for_url(re.compile(rf"/desk/drafts/{draft_id}$"))
    assert "sent" in ada.locator("#facts").inner_text()
    assert desk.dispatch() == 1
    (status,) = desk.mastodon.statuses.values()
    assert headline in status["content"]
    ada.get_by_role("link", name="see its deliveries").click()
    sent_link = ada.locator("table.matrix a.st.sent")
    assert sent_link.get_attribute("href") == status["url"]
    shot(ada, "desk-thread-sent")

    # One click on the sent notice starts a Cancel, pre-drafted, through the same approval.
    eddie.goto(ada.url)
    eddie.get_by_role("link", name="Cancel this notice").click()
    assert eddie.get_by_label("Headline").input_value() == headline
    assert "cancelled" in eddie.get_by_label("Description").input_value()
    eddie.locator("article[data-channel='mastodon'] pre", has_text="CANCELLED").wait_for()
    shot(eddie, "desk-compose-cancel")
    eddie.get_by_role("button", name="Submit").click()
    eddie.wait_for_url(re.compile(r"/desk/drafts/\d+$"))
    cancel_id = int(eddie.url.rsplit("/", 1)[1])
    ada.goto(f"{desk.url}/desk/drafts/{cancel_id}")
    ada.get_by_role("button", name="Approve and send").click()
    ada.wait_for_url(re.compile(rf"/desk/drafts/{cancel_id}$"))
    assert desk.dispatch() == 1
    cancel = [s for s in desk.mastodon.statuses.values() if s["id"] != status["id"]]
    assert len(cancel) == 1 and cancel[0]["in_reply_to_id"] == status["id"]
    assert "CANCELLED" in cancel[0]["content"]

    # The audit log shows who did what, filterable, and exports as CSV.
    ada.goto(f"{desk.url}/desk/audit")
    ada.get_by_label("Who").select_option("ada")
    ada.get_by_role("button", name="Filter").click()
    actions = ada.locator("table.audit tbody td:nth-child(3)").all_inner_texts()
    assert actions.count("approve") == 2 and "compose" not in actions
    shot(ada, "desk-audit")
    csv_href = ada.locator("a[download]").get_attribute("href")
    assert csv_href == "/desk/audit.csv?actor=ada&action=&since=&until=&q="
    csv_text = ada.request.get(desk.url + csv_href).text()
    assert csv_text.startswith("id,at,actor,action") and ",ada,approve," in csv_text


def test_a_test_notice_never_reaches_a_public_channel(desk: Desk) -> None:
    eddie = desk.login("eddie")
    eddie.get_by_role("link", name="Compose").click()
    eddie.get_by_role("link", name="Test message").click()  # a built-in template
    assert eddie.locator("input[name=status][value=test]").is_checked()
    # The whole page is striped and says so, the moment it is a test.
    assert "drill" in (eddie.locator("body").get_attribute("class") or "")
    banner = eddie.evaluate(
        "getComputedStyle(document.querySelector('main h1'), '::before').content"
    )
    assert "NOT A REAL ALERT" in banner
    verdict = eddie.locator("#preview-body .verdict")
    assert "This is a test notice" in verdict.inner_text()
    assert eddie.locator("#preview-body article.pv").evaluate_all(
        "els => els.map(e => e.dataset.channel)"
    ) == ["drills"]
    shot(eddie, "desk-compose-test")
    # Switching to Actual turns the page live, and back.
    eddie.locator("input[name=status][value=actual]").check()
    eddie.locator("#preview-body .verdict.live").wait_for()
    assert "drill" not in (eddie.locator("body").get_attribute("class") or "")
    eddie.locator("input[name=status][value=test]").check()
    eddie.locator("#preview-body .verdict.drill").wait_for()
    assert eddie.locator("#submit").inner_text() == "Submit test (sends at once)"
    eddie.get_by_role("button", name="Submit").click()
    eddie.wait_for_url(re.compile(r"/desk/drafts/\d+$"))
    assert "sent" in eddie.locator("#facts").inner_text()  # tests need no approval
    desk.dispatch()
    assert desk.mastodon.statuses == {}
    assert {(r.channel, r.state) for r in rows(desk.store, deliveries)} == {("drills", "sent")}


def test_revoked_credentials_show_needs_reauth_live(desk: Desk) -> None:
    ada = desk.login("ada")
    live = ada.locator("#live")
    assert live.locator("#channel-mastodon .badge").inner_text() == "healthy"
    # The platform revokes the token; a notice is sent; the live panel changes by itself.
    desk.mastodon.token = "rotated-by-the-admin"
    eddie = desk.login("eddie")
    compose_actual(eddie, desk, "Water pressure low in the Valley")
    eddie.get_by_role("button", name="Submit").click()
    eddie.wait_for_url(re.compile(r"/desk/drafts/\d+$"))
    draft_id = eddie.url.rsplit("/", 1)[1]
    approver = desk.browser.new_page()
    approver.context.add_cookies(ada.context.cookies())
    approver.goto(f"{desk.url}/desk/drafts/{draft_id}")
    approver.get_by_role("button", name="Approve and send").click()
    approver.wait_for_url(re.compile(rf"/desk/drafts/{draft_id}$"))
    refreshed = int(live.get_attribute("data-refreshed") or 0)
    desk.dispatch()
    state = rows(desk.store, channels_t, channels_t.c.name == "mastodon")[0].state
    assert state == "needs_reauth"
    live.locator("#channel-mastodon .badge.bad", has_text="needs_reauth").wait_for(timeout=10_000)
    assert int(live.get_attribute("data-refreshed") or 0) > refreshed  # swapped in, no reload
    assert "refused the credential" in live.locator("#channel-mastodon").inner_text()
    # The held delivery is listed in plain words with the buttons to act on it.
    problem = live.locator("table.problems tbody tr").first
    assert "refused our credentials" in problem.inner_text()
    assert problem.get_by_role("button", name="Retry now").count() == 1
    assert ada.locator("#arrivals li a", has_text="Water pressure low").count() == 1
    shot(ada, "desk-status-needs-reauth")
