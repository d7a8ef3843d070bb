"""Flows decide what to send next and do no I/O: tested here with no server at all.

The same rules run against real servers in test_download.py, test_upload.py,
test_errors.py and test_rules.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import wxtransfer
from wxtransfer._flow import (
    DOWNLOAD_REDIRECTS,
    UPLOAD_REDIRECTS,
    Answer,
    Exchange,
    LazyFlow,
    advance,
    follow_redirects,
    same_origin,
)
from wxtransfer._options import Request, validate_download, validate_upload

SECRET = [("Authorization", "Bearer s"), ("Cookie", "a=1"), ("X-Trace", "7")]


def download(url: str = "http://a.test/start", **kw: object) -> Request:
    return validate_download(url, header=dict(SECRET), **kw)


def upload(tmp_path: Path) -> Request:
    f = tmp_path / "f.txt"
    f.write_text("x")
    return validate_upload("http://a.test/up", f, "file", header=dict(SECRET))


def run(request: Request, answers: list[Answer], rules: object = None) -> list[Exchange]:
    """The exchanges the flow asks for when the server answers ``answers`` in turn."""
    flow = follow_redirects(request, rules)  # type: ignore[arg-type]
    exchanges = [next(flow)]
    for answer in answers:
        exchange = advance(flow, answer)
        if exchange is None:
            return exchanges
        exchanges.append(exchange)
    raise AssertionError(f"the flow wants more than {len(answers)} answers")


def test_a_final_answer_ends_the_flow_after_one_exchange() -> None:
    exchanges = run(download(), [Answer(200)])
    assert [e.url for e in exchanges] == ["http://a.test/start"]
    assert exchanges[0].follow == DOWNLOAD_REDIRECTS
    assert exchanges[0].headers == SECRET


def test_redirects_are_followed_and_credentials_stay_on_their_host() -> None:
    exchanges = run(
        download(),
        [
            Answer(302, "http://a.test:80/same-origin"),
            Answer(301, "https://b.test/other-host"),
            Answer(307, "https://b.test/again"),
            Answer(404),  # any final status ends it: the platform's rule
        ],
    )
    assert [e.url for e in exchanges] == [
        "http://a.test/start",
        "http://a.test:80/same-origin",
        "https://b.test/other-host",
        "https://b.test/again",
    ]
    assert exchanges[1].headers == SECRET  # same host and port: kept
    assert exchanges[2].headers == [("X-Trace", "7")]  # another host: dropped for good
    assert exchanges[3].headers == [("X-Trace", "7")]


def test_a_status_to_follow_without_a_location_is_final() -> None:
    assert len(run(download(), [Answer(302, None)])) == 1


def test_uploads_follow_only_307_and_308(tmp_path: Path) -> None:
    request = upload(tmp_path)
    assert len(run(request, [Answer(302, "http://a.test/x")])) == 1
    assert len(run(request, [Answer(303, "http://a.test/x")])) == 1
    exchanges = run(request, [Answer(308, "http://a.test/x"), Answer(200)])
    assert [e.url for e in exchanges] == ["http://a.test/up", "http://a.test/x"]
    assert exchanges[0].follow == UPLOAD_REDIRECTS


def test_the_eleventh_redirect_is_refused() -> None:
    answers = [Answer(302, f"http://a.test/{i}") for i in range(11)]
    with pytest.raises(wxtransfer.NetworkError) as caught:
        run(download(), answers)
    assert (caught.value.err_msg, caught.value.errno) == (
        "downloadFile:fail too many redirects",
        600008,
    )


def test_ten_redirects_are_followed() -> None:
    answers = [Answer(302, f"http://a.test/{i}") for i in range(10)] + [Answer(200)]
    assert len(run(download(), answers)) == 11


def test_a_redirect_to_another_scheme_is_an_invalid_url() -> None:
    with pytest.raises(wxtransfer.InvalidArgumentError) as caught:
        run(download(), [Answer(302, "ftp://a.test/file")])
    assert caught.value.errno == 600009
    assert "redirect to unsupported 'ftp://a.test/file'" in caught.value.err_msg


def test_platform_rules_refuse_a_redirect_before_it_is_contacted() -> None:
    rules = wxtransfer.WeChatRules(
        app_id="wx0123456789abcdef", download_domains=["https://cdn.example.com"]
    )
    request = download("https://cdn.example.com/a.png")
    ok = run(request, [Answer(302, "https://cdn.example.com/b.png"), Answer(200)], rules)
    assert len(ok) == 2
    with pytest.raises(wxtransfer.RuleError) as caught:
        run(request, [Answer(302, "https://evil.example.org/b.png")], rules)
    assert "redirect from https://cdn.example.com/a.png" in caught.value.err_msg


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://A.test/x", "http://a.test:80/y", True),
        ("https://a.test/x", "https://a.test:443/", True),
        ("http://a.test/x", "https://a.test/x", False),  # another default port
        ("http://a.test:8080/", "http://a.test:8081/", False),
        ("http://a.test/", "http://b.test/", False),
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(a, b) is same


# ---- LazyFlow: the same decisions, without a generator for the simple case ------------------


def lazy(request: Request, retry: object = None) -> LazyFlow:
    return LazyFlow(request, None, retry, lambda: None)  # type: ignore[arg-type]


def test_a_lazy_flow_sends_the_request_as_it_is_and_ends_on_a_final_answer() -> None:
    flow = lazy(download())
    eager = next(follow_redirects(download()))
    assert flow.first == eager
    assert flow.send(Answer(200)) is None
    assert flow._flow is None  # no generator was ever made


def test_a_lazy_flow_follows_redirects_as_the_flow_does() -> None:
    answers = [Answer(302, "http://a.test:80/same-origin"), Answer(301, "https://b.test/x")]
    flow = lazy(download())
    got = [flow.first]
    for answer in answers:
        nxt = flow.send(answer)
        assert nxt is not None
        got.append(nxt)
    assert got == run(download(), [*answers, Answer(200)])
    assert flow.send(Answer(200)) is None


def test_a_lazy_flow_without_retry_raises_the_error() -> None:
    err = wxtransfer.NetworkError("downloadFile:fail reset", 600003, curl_code=56)
    with pytest.raises(wxtransfer.NetworkError):
        lazy(download()).send(Answer(error=err))


def test_a_lazy_flow_with_retry_starts_the_flow_at_once() -> None:
    flow = lazy(download(), wxtransfer.Retry(total=2))
    assert flow._flow is not None and flow.first.judge is not None
    err = wxtransfer.NetworkError("downloadFile:fail reset", 600003, curl_code=56)
    assert flow.send(Answer(error=err)) is not None  # tried again
