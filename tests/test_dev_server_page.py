"""The dev server's page (``wxtransfer._server_page``) in headless Chromium, via selenium.

Files are picked by sending their paths to the page's file input, as a user would; the
page uploads each with its own XHR and a progress bar, refreshes the list, asks for the
token when the server has one, and shows errors next to the file. The no-JavaScript form
is checked too, with Chromium's JavaScript turned off and with :mod:`http.client`.

``WXTRANSFER_SCREENSHOTS=1`` saves the mid-upload screenshot to ``docs/server-page.png``
(otherwise it goes to the test's tmp_path).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import start_chromium
from wxtransfer._server import DevServer

DOCS = Path(__file__).resolve().parents[1] / "docs"
TOKEN_KEY = "wxtransfer.token"

pytestmark = pytest.mark.timeout(120)

Chrome = Callable[..., Any]


# --------------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET with urllib, never through a proxy; (status, body), HTTP errors included."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def make_file(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def chrome(tmp_path: Path) -> Iterator[Chrome]:
    """A factory of headless Chromiums (selenium); downloads go to ``driver.downloads``."""
    drivers: list[Any] = []

    def start(*, javascript: bool = True) -> Any:
        folder = tmp_path / f"chrome-{len(drivers)}"
        driver = start_chromium(folder, javascript=javascript, window_size="1100,860")
        drivers.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def one(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def upload_rows(driver: Any) -> dict[str, dict[str, str]]:
    """The page's upload rows by file name: class, percent, bar value, bytes and status."""
    script = """
      return Array.from(document.querySelectorAll("#uploads li")).map((li) => ({
        name: li.querySelector(".name").textContent,
        state: li.className,
        pct: li.querySelector(".pct").textContent,
        value: li.querySelector(".bar").getAttribute("aria-valuenow"),
        bytes: li.querySelector(".bytes").textContent,
        status: li.querySelector(".status").textContent,
      }));
    """
    return {row["name"]: row for row in driver.execute_script(script)}


def listed(driver: Any) -> dict[str, dict[str, str]]:
    """The file table's rows by original name: stored name, size, sha256, link, text."""
    script = """
      const table = document.getElementById("files");
      if (table.hidden) return [];
      return Array.from(table.tBodies[0].rows).map((tr) => ({
        filename: tr.querySelector("a.file").textContent,
        href: tr.querySelector("a.file").href,
        name: tr.dataset.name, size: tr.dataset.size, sha256: tr.dataset.sha256,
        text: tr.innerText,
      }));
    """
    return {row["filename"]: row for row in driver.execute_script(script)}


def throttle(driver: Any, upload_bytes_per_second: int) -> None:
    """Slow Chromium's uploads down (DevTools network emulation; -1: no limit)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {
            "offline": False,
            "latency": 0,
            "downloadThroughput": -1,
            "uploadThroughput": upload_bytes_per_second,
        },
    )


def pick(driver: Any, *paths: Path) -> None:
    one(driver, "#picker").send_keys("\n".join(str(p) for p in paths))


def wait_done(driver: Any, names: list[str], timeout: float = 30) -> dict[str, dict[str, str]]:
    def done() -> dict[str, dict[str, str]] | None:
        rows = upload_rows(driver)
        finished = all(n in rows and "done" in rows[n]["state"] for n in names)
        return rows if finished else None

    rows: dict[str, dict[str, str]] = wait_for(done, timeout, f"{names} to be uploaded")
    return rows


# --------------------------------------------------------------------------- uploads


def test_two_files_upload_with_progress_and_are_listed(
    root: Path, src: Path, chrome: Chrome
) -> None:
    driver = chrome()
    small = make_file(src, "notes ü.txt", 150_000)
    big = make_file(src, "photo.bin", 6_000_000)
    with DevServer(root) as dev:
        driver.get(dev.url + "/")
        assert driver.title == "wxtransfer dev server"
        assert one(driver, "#empty").is_displayed() and not one(driver, "#files").is_displayed()
        # Record every percentage each bar shows, to see them move.
        driver.execute_script(
            """
            window.seen = {};
            new MutationObserver(() => {
              for (const li of document.querySelectorAll("#uploads li")) {
                const name = li.querySelector(".name").textContent;
                (window.seen[name] = window.seen[name] || []).push(
                  li.querySelector(".bar").getAttribute("aria-valuenow"));
              }
            }).observe(document.getElementById("uploads"),
                       {subtree: true, childList: true, attributes: true});
            """
        )
        throttle(driver, 12_000_000)  # about half a second for the big one: the bar moves
        pick(driver, small, big)
        rows = wait_done(driver, [small.name, big.name])
        for path in (small, big):
            row = rows[path.name]
            assert (row["pct"], row["value"]) == ("100 %", "100"), row
            assert row["status"].startswith("Stored as "), row
        assert rows[small.name]["bytes"] == "146.5 KiB of 146.5 KiB"
        assert rows[big.name]["bytes"] == "5.7 MiB of 5.7 MiB"
        seen = driver.execute_script("return window.seen")
        assert seen[big.name][-1] == "100"
        assert any(0 < int(v) < 100 for v in seen[big.name] if v), seen[big.name]

        # The list refreshes without a reload: names, sizes and SHA-256s.
        entries = wait_for(lambda: len(listed(driver)) == 2 and listed(driver), 15, "the list")
        for path in (small, big):
            data = path.read_bytes()
            entry = entries[path.name]
            assert entry["size"] == str(len(data)) and entry["sha256"] == sha256(data)
            assert sha256(data) in entry["text"] and entry["name"] in entry["text"]
            assert (root / entry["name"]).read_bytes() == data
        assert not one(driver, "#empty").is_displayed()
        assert "{" not in one(driver, "body").text  # never raw JSON

        # The link downloads the very bytes (urllib here; the browser in the token test).
        status, body = fetch(entries[big.name]["href"])
        assert status == 200 and sha256(body) == sha256(big.read_bytes())

        # A reload shows the same list, rendered by the server this time.
        driver.refresh()
        assert set(listed(driver)) == {small.name, big.name}


def test_errors_show_next_to_the_file(root: Path, src: Path, chrome: Chrome) -> None:
    driver = chrome()
    fits = make_file(src, "fits.bin", 20_000)
    too_big = make_file(src, "too-big.bin", 400_000)
    with DevServer(root, max_size=100_000) as dev:
        driver.get(dev.url + "/")
        assert "Largest upload: 97.7 KiB (100000 bytes)" in one(driver, "#drop").text
        pick(driver, fits, too_big)

        def settled() -> dict[str, dict[str, str]] | None:
            rows = upload_rows(driver)
            states = [rows.get(p.name, {}).get("state", "") for p in (fits, too_big)]
            return rows if "done" in states[0] and "failed" in states[1] else None

        rows = wait_for(settled, 30, "one upload stored and one refused")
        status = rows[too_big.name]["status"]
        assert status == "Too large (HTTP 413): request body larger than 100000 bytes", status
        assert "{" not in one(driver, "body").text
        wait_for(lambda: set(listed(driver)) == {fits.name}, 15, "the list")
        assert [p.name for p in root.iterdir() if p.is_file()] == [
            listed(driver)[fits.name]["name"]
        ]
        url = dev.url

    # The server is gone: a network error, shown the same way.
    late = make_file(src, "late.bin", 1000)
    assert url.startswith("http://127.0.0.1:")
    pick(driver, late)
    rows = wait_for(
        lambda: (
            "failed" in upload_rows(driver).get(late.name, {}).get("state", "")
            and upload_rows(driver)
        ),
        20,
        "the network error",
    )
    assert rows[late.name]["status"].startswith("Network error"), rows[late.name]


# --------------------------------------------------------------------------- token


def test_token_is_asked_kept_and_sent(root: Path, src: Path, chrome: Chrome) -> None:
    driver = chrome()
    first = make_file(src, "first.bin", 300_000)
    second = make_file(src, "second.bin", 200_000)
    with DevServer(root, token="s3cret") as dev:
        # The page shell loads for a browser; the list and everything else need the token.
        status, page = fetch(dev.url + "/", {"Accept": "text/html"})
        assert status == 200 and b'data-token="required"' in page
        assert fetch(dev.url + "/?format=json", {"Accept": "text/html"})[0] == 401
        assert fetch(dev.url + "/")[0] == 401  # curl-like */* too

        driver.get(dev.url + "/")
        form = wait_for(lambda: one(driver, "#token-form").is_displayed(), 10, "the token form")
        assert form
        assert "needs a token" in one(driver, "#token-note").text
        assert not one(driver, "#files").is_displayed()

        # A wrong token: the list answers 401 and the page asks again.
        one(driver, "#token").send_keys("wrong\n")
        wait_for(
            lambda: (
                "not accepted" in one(driver, "#token-note").text
                and one(driver, "#token-form").is_displayed()
            ),
            10,
            "the page to ask again",
        )
        one(driver, "#token").send_keys("s3cret\n")
        wait_for(lambda: one(driver, "#empty").is_displayed(), 10, "the (empty) list")
        assert not one(driver, "#token-form").is_displayed()
        assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") == "s3cret"

        pick(driver, first)
        wait_done(driver, [first.name])
        wait_for(lambda: first.name in listed(driver), 10, "the first file listed")

        # Kept for the session: a reload does not ask again.
        driver.refresh()
        wait_for(lambda: first.name in listed(driver), 10, "the list after a reload")
        assert not one(driver, "#token-form").is_displayed()

        # The link downloads with the token (fetch + the Authorization header).
        one(driver, "a.file").click()

        def downloaded() -> list[Path]:
            done = [p for p in driver.downloads.iterdir() if not p.name.endswith(".crdownload")]
            return done if done and done[0].stat().st_size == first.stat().st_size else []

        (saved,) = wait_for(downloaded, 20, "the browser download")
        assert saved.name == first.name and saved.read_bytes() == first.read_bytes()

        # A token that stops working: the upload waits, the page asks, then it is sent.
        driver.execute_script(f"sessionStorage.setItem('{TOKEN_KEY}', 'stale')")
        pick(driver, second)
        wait_for(
            lambda: "waiting" in upload_rows(driver).get(second.name, {}).get("state", ""),
            15,
            "the upload to wait for the token",
        )
        assert one(driver, "#token-form").is_displayed()
        one(driver, "#token").send_keys("s3cret\n")
        wait_done(driver, [second.name])
        wait_for(lambda: set(listed(driver)) == {first.name, second.name}, 10, "both listed")


# --------------------------------------------------------------------------- no JavaScript


def test_form_without_javascript_redirects_back(root: Path, src: Path, chrome: Chrome) -> None:
    driver = chrome(javascript=False)
    path = make_file(src, "plain form.bin", 50_000)
    with DevServer(root) as dev:
        driver.get(dev.url + "/")
        assert one(driver, "#send").is_displayed()  # the script would hide it
        pick(driver, path)
        one(driver, "#send").click()
        wait_for(lambda: by_css(driver, "a.file"), 15, "the list after the redirect")
        assert driver.current_url == dev.url + "/"
        assert one(driver, "a.file").text == path.name
        assert sha256(path.read_bytes()) in one(driver, "#files").text


def test_form_post_answers_html_not_json(root: Path) -> None:
    body = (
        b'--zzz\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\n'
        + b"x" * 2000
        + b"\r\n--zzz--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=zzz"}

    def post(port: int, extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", "/upload?via=form", body, {**headers, **(extra or {})})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read().decode()
        finally:
            conn.close()

    with DevServer(root) as dev:
        status, got, _ = post(dev.port)
        assert (status, got["Location"]) == (303, "/")
    with DevServer(root, max_size=1000) as dev:
        status, got, page = post(dev.port)
        assert status == 413 and got["Content-Type"].startswith("text/html")
        assert "Upload failed (HTTP 413): request body larger than 1000 bytes" in page
        assert '<a href="/">' in page
    with DevServer(root, token="t") as dev:
        status, got, page = post(dev.port)
        assert status == 401 and got["Content-Type"].startswith("text/html")
        assert "Upload failed (HTTP 401)" in page


# --------------------------------------------------------------------------- screenshot


def test_screenshot_mid_upload(root: Path, src: Path, tmp_path: Path, chrome: Chrome) -> None:
    """A screenshot while a 50 MB upload is half-way (Chromium throttled to 8 MB/s)."""
    driver = chrome()
    done = [make_file(src, name, size) for name, size in [("report.pdf", 2_400_000)]]
    quick = make_file(src, "notes.txt", 40_000)
    large = make_file(src, "dataset 2024.bin", 50_000_000)
    target = (
        DOCS / "server-page.png"
        if os.environ.get("WXTRANSFER_SCREENSHOTS") == "1"
        else tmp_path / "server-page.png"
    )
    with DevServer(root, max_size=200_000_000) as dev:
        driver.get(dev.url + "/")
        pick(driver, *done)
        wait_for(lambda: len(listed(driver)) == 1, 20, "the first file listed")
        driver.refresh()  # a fresh page: only the uploads under way show bars
        throttle(driver, 8_000_000)
        try:
            pick(driver, quick, large)

            def half_way() -> bool:
                rows = upload_rows(driver)
                big = rows.get(large.name)
                small = rows.get(quick.name)
                return bool(
                    big and small and "done" in small["state"] and 35 <= int(big["value"]) <= 75
                )

            wait_for(half_way, 30, "the large upload to be half-way")
            assert driver.save_screenshot(str(target))
            rows = upload_rows(driver)
            assert "done" not in rows[large.name]["state"]
            throttle(driver, -1)
            wait_done(driver, [quick.name, large.name], timeout=60)
        finally:
            driver.execute_cdp_cmd("Network.disable", {})
        wait_for(lambda: len(listed(driver)) == 3, 15, "three files listed")
    assert target.stat().st_size > 10_000 and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
