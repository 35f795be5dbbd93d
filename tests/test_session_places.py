"""Which sessions keep their place (the real store, real folders): a page's work waits for a
reload, an API client's does not; a client with no heartbeat open is freed after the idle time.

Through the running app: tests/test_app_views_api.py and tests/test_app_views_browser.py."""

from __future__ import annotations

import time

import pytest

from ui.sessions import SessionStore


def store(tmp_path, **kwargs) -> SessionStore:
    return SessionStore(tmp_path / "root", ttl_s=600, grace_s=300, idle_s=5, **kwargs)


def test_a_session_knows_whether_a_page_made_it(tmp_path):
    places = store(tmp_path)
    places.page_opened("page")
    assert places.get("page", "a", create=True).from_page
    assert not places.get("client", "b", create=True).from_page
    late = places.get("late", "c", create=True)  # the upload overtook the page's load event
    places.page_opened("late")
    assert late.from_page


def test_without_page_and_heartbeat_a_session_waits_only_the_idle_time(tmp_path):
    places = store(tmp_path)
    places.page_opened("page")
    page = places.get("page", "a", create=True)
    silent = places.get("silent", "b", create=True)
    beating = places.get("beating", "c", create=True)
    later = time.monotonic() + 6
    with places.connection("beating"):
        assert places.connected("beating") and not places.connected("silent")
        assert places.sweep(now=later) == ["silent"]
        assert not silent.folder.exists() and page.folder.is_dir() and beating.folder.is_dir()
    assert not places.connected("beating")
    assert beating.last_seen >= later - 6  # its idle time starts when the heartbeat ends
    assert places.sweep(now=time.monotonic() + 1) == []
    assert places.sweep(now=time.monotonic() + 6) == ["beating"]
    assert places.peek("page") is page  # a page's session waits the TTL
    assert places.sweep(now=time.monotonic() + 601) == ["page"]


def test_two_heartbeats_of_one_session_count_until_both_end(tmp_path):
    places = store(tmp_path)
    with places.connection("s"):
        with places.connection("s"):
            pass
        assert places.connected("s")
    assert not places.connected("s")


def test_a_page_that_went_away_is_forgotten(tmp_path):
    places = store(tmp_path)
    places.page_opened("gone")
    places.page_closed("gone")
    assert not places.get("gone", "a", create=True).from_page
    places.page_opened("missed")  # its unload never came: forgotten after the TTL
    places.sweep(now=time.monotonic() + 601)
    assert not places.get("missed", "b", create=True).from_page


def test_the_idle_time_is_an_option(capsys):
    import app

    assert app.parse_args([]).client_idle_s == 120.0 and app.parse_args(["--client-idle-s", "5"]).client_idle_s == 5
    for bad in ("0", "-3", "nan"):
        with pytest.raises(SystemExit):
            app.parse_args(["--client-idle-s", bad])
    assert "argument --client-idle-s: 'nan' is not a positive number" in capsys.readouterr().err
