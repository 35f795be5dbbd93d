"""The work kept on disk (ui/saved_work.py) and the store's side of it (ui/sessions.py): what is
written after a change, what a restart reads back, and how damaged or hostile folders are
refused and deleted while the rest is kept. No model: the documents are made by hand on a real
decoded video (ffmpeg), as the page would hold them."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from annotation import formats
from annotation.document import ObjectInfo, PackedMask, PromptCall, PromptSpec, Snapshot
from annotation.work import LoadedVideo
from sam2.video_io import MediaLimits, decode
from tests import media_factory
from ui.saved_work import (
    SAVED,
    SESSION_FILE,
    WORK_FILE,
    SavedWorkError,
    VideoSource,
    WorkKeeper,
    has_work,
    lost_words,
    owner_digest,
    read_saved_work,
)
from ui.sessions import SessionStore, WorkState

COOKIE = "the-browsers-owner-cookie"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media_factory.testsrc(tmp_path_factory.mktemp("saved") / "clip.mp4", size=(64, 48), fps=4, seconds=1.0)


@pytest.fixture(scope="module")
def decoded(clip: Path):
    return decode(clip, MediaLimits(max_seconds=4, max_frames=40))


def page_work(store: SessionStore, decoded, clip: Path, session_id: str = "page-1", owner: str = COOKIE) -> WorkState:
    """A page's session with the clip loaded, two objects, a click and a box on frame 0, and
    object 1 tracked on frames 1 and 2 (the masks made by hand)."""
    store.page_opened(session_id)
    work = store.get(session_id, owner, create=True)
    frames = decoded.frames
    work.video = LoadedVideo("clip.mp4", replace(decoded, frames=[]), frames, handle=None)
    h, w = frames[0].shape[:2]
    masks = {}
    for frame in range(3):
        mask = np.zeros((h, w), bool)
        mask[10 + frame : 30, 5 : 25 + frame] = True
        masks[(frame, 1)] = PackedMask.pack(mask)
    masks[(0, 2)] = PackedMask.pack(np.eye(h, w, dtype=bool))
    calls = (PromptCall(0, 1, PromptSpec(((12.0, 20.0),), (1,))), PromptCall(0, 2, PromptSpec(box=(1, 1, 40, 40))))
    work.registry = {1: ObjectInfo(1, "dog"), 2: ObjectInfo(2, "ball", label="toy")}
    work.labels = ["object", "toy"]
    tracked = frozenset({(0, 1), (1, 1), (2, 1)})  # a run from frame 0 marks its start frame too
    work.doc = Snapshot(object_ids=(1, 2), calls=calls, masks=masks, tracked=tracked)
    work.source = VideoSource((clip.resolve(),), "clip.mp4", None)
    work.shown_frame = 2
    return work


def keeper_of(store: SessionStore) -> WorkKeeper:
    return WorkKeeper(store, image_size_of=lambda handle: 512)


def test_a_change_is_saved_and_read_back(tmp_path, decoded, clip):
    store = SessionStore(tmp_path / "sessions")
    work = page_work(store, decoded, clip)
    keeper = keeper_of(store)
    assert keeper.keep_all() == 1
    assert keeper.keep_all() == 0  # nothing changed since: nothing written
    saved = read_saved_work(work.folder)
    assert saved is not None
    assert (saved.video_name, saved.objects, saved.tracked_frames, saved.shown_frame) == ("clip.mp4", 2, 2, 2)
    assert saved.image_size == 512 and saved.source.name == "clip.mp4" and saved.source.fps is None
    kept = saved.source.files[0]
    assert work.folder / SAVED in kept.parents and kept.read_bytes() == clip.read_bytes()
    assert os.path.samefile(kept, clip) or kept.stat().st_size == clip.stat().st_size  # a hard link where it can
    text = (work.folder / SAVED / WORK_FILE).read_text()
    assert COOKIE not in text and owner_digest(COOKIE) in text  # only the cookie's hash is on disk
    assert saved.belongs_to(COOKIE) and not saved.belongs_to("another-cookie") and not saved.belongs_to("")
    assert saved.offer_text().startswith("Your work on 'clip.mp4' from ")
    assert saved.offer_text().endswith(" (2 objects, 2 tracked frames) was kept. Restore it?")
    day = time.localtime()
    past_midnight = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 5, 0, 0, 0, -1))
    assert replace(saved, saved_at=past_midnight).when(now=past_midnight + 60) == "0:05"
    assert replace(saved, saved_at=past_midnight).when(now=past_midnight + 86_400).endswith(" 0:05")

    # The session file is the one "Make files" writes: the same objects, prompts and masks.
    session = formats.load_session_json(saved.session_file)
    assert [(o.id, o.name, o.label) for o in session.objects] == [(1, "dog", "object"), (2, "ball", "toy")]
    got = {(m.frame, m.obj_id): PackedMask.from_bits(work.video.frame_size(0), m.top, m.left, (m.height, m.width),
                                                     m.bits) for m in session.masks}  # fmt: skip
    assert got.keys() == work.doc.masks.keys()
    assert all(np.array_equal(got[k].unpack(), work.doc.masks[k].unpack()) for k in got)

    # A rename is a change too; an API client's session is never kept (it cannot reload).
    work.update_object(2, name="red ball")
    assert keeper.keep_all() == 1
    assert read_saved_work(work.folder).objects == 2
    assert formats.load_session_json(saved.session_file).objects[1].name == "red ball"
    api = store.get("api-client", "api-cookie", create=True)
    api.video, api.source, api.doc = work.video, work.source, work.doc
    assert keeper.keep_all() == 0 and not (api.folder / SAVED).exists()


def test_a_new_upload_replaces_the_kept_copy(tmp_path, decoded, clip):
    store = SessionStore(tmp_path / "sessions")
    work = page_work(store, decoded, clip)
    keeper = keeper_of(store)
    keeper.keep_all()
    other = tmp_path / "other.mp4"
    other.write_bytes(clip.read_bytes())
    work.source = VideoSource((other,), "other.mp4", 2.0)
    keeper.keep_all()
    saved = read_saved_work(work.folder)
    assert [p.name for p in saved.source.files] == ["other.mp4"] and saved.source.fps == 2.0
    assert [p.name for p in (work.folder / SAVED).glob("upload-*/*/*")] == ["other.mp4"]  # the old copy is gone


def test_the_store_keeps_good_work_and_deletes_the_rest_at_start(tmp_path, decoded, clip):
    root = tmp_path / "sessions"
    first = SessionStore(root, ttl_s=600)
    mine = page_work(first, decoded, clip)
    theirs = page_work(first, decoded, clip, session_id="page-2", owner="their-cookie")
    old = page_work(first, decoded, clip, session_id="page-3")
    keeper_of(first).keep_all()
    empty = first.get("page-4", COOKIE, create=True)  # a page that never loaded a video
    work_file = old.folder / SAVED / WORK_FILE
    data = json.loads(work_file.read_text())
    work_file.write_text(json.dumps({**data, "saved_at": time.time() - 601}))  # last changed beyond the TTL
    (mine.folder / "view").mkdir(exist_ok=True)
    (mine.folder / "view" / "frame-000001.png").write_bytes(b"picture")
    first.shutdown()  # the server stops: kept work stays on disk
    assert mine.folder.is_dir() and not empty.folder.exists()

    second = SessionStore(root, ttl_s=600)
    assert second.load_saved() == []
    assert not old.folder.exists()  # expired: deleted
    assert sorted(p.name for p in mine.folder.iterdir()) == [SAVED]  # last run's pictures are not needed
    saved = second.saved_for(COOKIE)
    assert saved is not None and saved.folder == mine.folder
    assert second.saved_for("their-cookie").folder == theirs.folder
    assert second.saved_for("a-third-cookie") is None and second.saved_for("") is None

    # Another browser can never take it, nor delete it; its own browser can.
    with pytest.raises(Exception, match="no longer on the server"):
        second.adopt("page-9", "their-cookie", saved)
    assert not second.discard_saved(saved, "their-cookie") and mine.folder.is_dir()
    work = second.adopt("page-9", COOKIE, saved)
    assert work.folder == mine.folder and work.from_page and second.saved_for(COOKIE) is None
    second.give_back("page-9", saved)  # a restore that was cancelled: it waits again
    assert second.saved_for(COOKIE) is saved and second.peek("page-9") is None and mine.folder.is_dir()
    assert second.discard_saved(saved, COOKIE) and not mine.folder.exists()


def write_damage(folder: Path, damage: str) -> None:
    saved = folder / SAVED
    work_file = saved / WORK_FILE
    data = json.loads(work_file.read_text())
    session = saved / SESSION_FILE
    if damage == "truncated":
        work_file.write_text(work_file.read_text()[:40])
    elif damage == "version":
        work_file.write_text(json.dumps({**data, "version": 99}))
    elif damage == "path trick":
        (saved / "upload-1" / "0").mkdir(parents=True, exist_ok=True)
        work_file.write_text(json.dumps({**data, "files": ["upload-1/0/../../../../../etc/passwd"]}))
    elif damage == "absolute path":
        work_file.write_text(json.dumps({**data, "files": ["/etc/passwd"]}))
    elif damage == "link out":
        link = saved / "upload-7" / "0" / "clip.mp4"
        link.parent.mkdir(parents=True)
        link.symlink_to("/etc/passwd")
        work_file.write_text(json.dumps({**data, "files": ["upload-7/0/clip.mp4"]}))
    elif damage == "huge":
        work_file.write_text(json.dumps({**data, "name": "x" * 300_000}))
    elif damage == "other session file":
        session.write_text(session.read_text().replace('"dog"', '"cat"'))
    elif damage == "session cut short":
        session.write_text(session.read_text()[:100])
        work_file.write_text(json.dumps({**data, "session_sha256": hashlib.sha256(session.read_bytes()).hexdigest()}))
    elif damage == "not an object":
        work_file.write_text("[1, 2, 3]")
    else:
        raise AssertionError(damage)


DAMAGES = ["truncated", "version", "path trick", "absolute path", "link out", "huge", "other session file",
           "session cut short", "not an object"]  # fmt: skip


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_or_hostile_work_is_refused_and_deleted(tmp_path, decoded, clip, damage):
    root = tmp_path / "sessions"
    first = SessionStore(root)
    work = page_work(first, decoded, clip)
    keeper_of(first).keep_all()
    write_damage(work.folder, damage)
    with pytest.raises(SavedWorkError) as refused:
        read_saved_work(work.folder)
    message = str(refused.value)
    assert "Traceback" not in message and len(message) < 300 and message.endswith(".")
    first.shutdown()

    second = SessionStore(root)  # the server starts anyway, with a plain message for the log
    messages = second.load_saved()
    assert len(messages) == 1 and messages[0].endswith("It was deleted."), messages
    assert messages[0].startswith(f"The kept work in '{work.folder.name}' is damaged: "), messages
    assert not work.folder.exists() and second.saved_for(COOKIE) is None
    assert Path("/etc/passwd").exists()  # nothing outside the folder was touched


def test_the_words_count_what_would_be_lost(tmp_path, decoded, clip):
    store = SessionStore(tmp_path / "sessions")
    work = page_work(store, decoded, clip)
    assert has_work(work)
    assert lost_words(work) == "'clip.mp4' has 2 objects with 1 click, 1 box and 2 tracked frames"
    work.doc = replace(work.doc, calls=work.doc.calls[:1], masks={}, tracked=frozenset())
    work.doc = replace(work.doc, object_ids=(1,))
    assert lost_words(work) == "'clip.mp4' has 1 object with 1 click and no tracked frames"
    work.doc, work.undo = Snapshot(object_ids=(1,)), []
    assert not has_work(work)  # a fresh video: nothing to lose
