"""Image sets: several images, a zip of them or a folder are the frames of one "video", in name
order, each at its own size. On the real engine with the reference weights, images made with
PIL and a video made by ffmpeg; exports read back with Pillow and pycocotools.

The masks of an image set are the predictor's for the same calls on the same frames (the
predictor given frames of different sizes); every mask and export keeps its image's size and
name; bad uploads are refused in words, and the work loaded before stays as it was."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from pycocotools.coco import COCO

import sam2
from annotation import datasets, formats, imports, operations
from annotation.document import UserError
from annotation.engine import Engine
from annotation.work import Work
from sam2.video_io import MediaLimits
from tests import media_factory
from tests.app_harness import Replay, start_app
from tests.reference import reference_state_dict
from tests.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# name -> (width, height): named so that name order is not plain string order (img10 last)
IMAGES = {"img1.jpg": (320, 240), "img2.png": (200, 300), "img10.png": (256, 256)}
ORDER = ["img1.jpg", "img2.png", "img10.png"]
LIMITS = MediaLimits()


def picture(width: int, height: int, shift: int) -> Image.Image:
    """A grey picture with an orange disc a little further right in each image (0.3 of the
    width across, a third of the way down), so the object is on every image."""
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy, r = width * (0.3 + 0.1 * shift), height / 3, min(width, height) / 6
    pixels = np.full((height, width, 3), 40, np.uint8)
    pixels[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (230, 120, 30)
    return Image.fromarray(pixels)


def disc_centre(name: str) -> tuple[float, float]:
    width, height = IMAGES[name]
    return width * (0.3 + 0.1 * ORDER.index(name)), height / 3


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for name, (width, height) in IMAGES.items():
        path = folder / name
        picture(width, height, ORDER.index(name)).save(path, quality=95)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def predictor():
    return sam2.build_video_predictor(
        "sam2.1_hiera_t", reference_state_dict("sam2.1_hiera_t"), image_size=64, corrections_as_cond=True
    )


@pytest.fixture(scope="module")
def engine(predictor) -> Engine:
    return Engine(predictor)


def load(tmp_path: Path, engine: Engine, paths: list[Path], name: str = "w") -> Work:
    work = Work(folder=tmp_path / name)
    operations.load_upload(work, engine, paths, LIMITS)
    return work


def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def png_bytes(width: int = 4, height: int = 3) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def direct_masks(predictor, image_files: list[Path]) -> dict[int, np.ndarray]:
    """The predictor on the images as PIL reads them, in name order, each at its own size: a
    click on the disc of image 2 (frame 1), tracked forward then backward from there."""
    by_name = {p.name: p for p in image_files}
    frames = [np.array(Image.open(by_name[name]).convert("RGB")) for name in ORDER]
    state = predictor.init_state(frames)
    x, y = disc_centre("img2.png")
    _, _, logits = predictor.add_new_points_or_box(state, 1, 1, points=[[x, y]], labels=[1])
    masks = {1: (logits[0, 0] > 0).numpy()}
    for reverse in (False, True):
        for frame, _, out in predictor.propagate_in_video(state, start_frame_idx=1, reverse=reverse):
            masks[frame] = (out[0, 0] > 0).numpy()
    return masks


def test_an_image_set_is_tracked_and_exported_at_each_images_size_and_name(tmp_path, engine, predictor, image_files):
    work = Work(folder=tmp_path / "w")
    message = operations.load_upload(work, engine, image_files[::-1], LIMITS)  # any upload order: name order
    assert message.startswith("Loaded 3 images, of different sizes (each keeps its own) from 'images'"), message
    video = work.video
    assert video.frame_names == tuple(ORDER)
    assert video.sizes == tuple((h, w) for w, h in (IMAGES[n] for n in ORDER))

    x, y = disc_centre("img2.png")
    operations.click(work, engine, 1, x, y, "add")
    with pytest.raises(UserError, match=r"outside the 200x300 frame"):
        operations.click(work, engine, 1, 250, 10, "add")  # inside image 1, outside image 2
    operations.track(work, engine, 1, "both", None)
    expected = direct_masks(predictor, image_files)
    for frame in range(3):
        mask = work.doc.frame_masks(frame)[1]
        assert mask.shape == video.frame_size(frame) and mask.any()
        assert np.array_equal(mask, expected[frame]), frame

    png, coco, yolo = operations.export(work, ["png", "coco", "yolo"], out_dir(tmp_path))
    with zipfile.ZipFile(png) as archive:
        assert sorted(archive.namelist()) == ["img1.png", "img10.png", "img2.png", "objects.json"]
        for frame, name in enumerate(ORDER):
            values = np.array(Image.open(archive.open(name.rsplit(".", 1)[0] + ".png")))
            assert values.shape == video.frame_size(frame)
            assert np.array_equal(values == 1, expected[frame])
    api = COCO(str(coco))
    for frame, name in enumerate(ORDER):
        image = api.imgs[frame + 1]
        assert (image["file_name"], image["width"], image["height"]) == (name, *IMAGES[name])
        (annotation,) = api.loadAnns(api.getAnnIds(imgIds=[frame + 1]))
        assert np.array_equal(api.annToMask(annotation).astype(bool), expected[frame])
    with zipfile.ZipFile(yolo) as archive:
        names = set(archive.namelist())
        assert {"images/train/img2.png", "labels/train/img2.txt", "images/train/img1.jpg"} <= names
        label = archive.read("labels/train/img2.txt").decode().split()
        xs, ys = np.array(label[1::2], float) * 200, np.array(label[2::2], float) * 300  # normalised by 200x300
        rows, cols = np.flatnonzero(expected[1].any(1)), np.flatnonzero(expected[1].any(0))
        assert np.allclose([xs.min(), xs.max(), ys.min(), ys.max()], [cols[0], cols[-1], rows[0], rows[-1]], atol=0.01)
        assert Image.open(archive.open("images/train/img10.png")).size == (256, 256)


def test_exports_that_need_one_size_are_refused_and_a_session_file_keeps_the_sizes(tmp_path, engine, image_files):
    work = load(tmp_path, engine, image_files)
    x, y = disc_centre("img10.png")
    operations.click(work, engine, 2, x, y, "add")
    out = out_dir(tmp_path)
    with pytest.raises(UserError, match=r"differ in size .*the overlay video and the YouTube-VIS file need one size"):
        operations.export(work, ["png", "overlay", "ytvis"], out)
    assert [p.name for p in out.iterdir()] == ["images_masks.zip"]  # the refused files do not stop the others
    (session,) = operations.export(work, ["session"], out)
    assert json.loads(session.read_text())["video"]["sizes"] == [list(IMAGES[n]) for n in ORDER]

    again = load(tmp_path, engine, image_files, name="again")
    operations.load_session(again, engine, session)
    assert again.doc.frame_masks(2)[1].shape == (256, 256)
    assert np.array_equal(again.doc.frame_masks(2)[1], work.doc.frame_masks(2)[1])


def test_one_size_images_export_as_a_video_too(tmp_path, engine):
    folder = tmp_path / "same"
    folder.mkdir()
    for i in range(2):
        picture(64, 48, i).save(folder / f"f{i}.png")
    work = load(tmp_path, engine, [folder])
    assert work.video.uniform and work.video.frame_names == ("f0.png", "f1.png")
    operations.click(work, engine, 0, *disc_centre_in(64, 48, 0), "add")
    made = operations.export(work, ["overlay", "ytvis", "png"], out_dir(tmp_path))
    assert [p.name for p in made] == ["same_overlay.mp4", "same_masks.zip", "same_ytvis.json"]
    assert json.loads(made[2].read_text())["videos"][0]["file_names"] == ["same/f0.png", "same/f1.png"]


def disc_centre_in(width: int, height: int, shift: int) -> tuple[float, float]:
    return width * (0.3 + 0.1 * shift), height / 3


def test_an_image_sets_exports_import_back_frame_by_frame(tmp_path):
    """PNG masks and COCO of an image set are found again by their images' names, each mask at
    its image's size; a mask of the wrong size names the image."""
    sizes = tuple((h, w) for w, h in (IMAGES[n] for n in ORDER))
    images = formats.ImageFrames(tuple(ORDER), sizes)
    masks = {f: {4: np.eye(*size, dtype=bool)} for f, size in enumerate(sizes)}
    shape = imports.VideoShape(3, *sizes[0], sizes, tuple(ORDER))
    png = formats.export_png_zip(masks, 3, sizes[0], {4: "line"}, tmp_path, images=images)
    data = datasets.Annotations("set.zip", [np.zeros((*s, 3), np.uint8) for s in sizes], masks, {4: "object"},
                                ("object",), sizes[0], 1.0, images)  # fmt: skip
    coco = datasets.export_coco(data, tmp_path)
    for imported in (imports.read_png_masks(png, shape), imports.read_coco_masks(coco, shape)):
        got = {m.frame: m.mask for m in imported.masks}
        assert got.keys() == {0, 1, 2} and all(np.array_equal(got[f], masks[f][4]) for f in got)
    swapped = imports.VideoShape(3, *sizes[0], (sizes[1], sizes[0], sizes[2]), tuple(ORDER))
    with pytest.raises(imports.ImportProblem, match=r"'img1.png' is 320x240, but image 'img1.jpg' is 200x300"):
        imports.read_png_masks(png, swapped)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def loaded(tmp_path, engine, image_files) -> Work:
    """Work with a click on it: what a bad upload must leave untouched."""
    work = load(tmp_path, engine, image_files)
    operations.click(work, engine, 0, *disc_centre("img1.jpg"), "add")
    return work


def assert_unchanged(work: Work, before: tuple) -> None:
    assert (work.video, work.doc, len(work.undo)) == before


def test_a_zip_with_non_images_is_refused_by_name_and_nothing_is_lost(tmp_path, engine, loaded):
    before = (loaded.video, loaded.doc, len(loaded.undo))
    bad = zip_of(tmp_path / "set.zip", {"a.png": png_bytes(), "notes.txt": b"hello", "b/c.pdf": b"%PDF"})
    with pytest.raises(UserError, match=r"'set.zip' holds 2 file\(s\) that are not images: 'notes.txt', 'b/c.pdf'"):
        operations.load_upload(loaded, engine, [bad], LIMITS)
    assert_unchanged(loaded, before)
    damaged = zip_of(tmp_path / "damaged.zip", {"a.png": png_bytes(), "b.png": b"not a picture"})
    with pytest.raises(UserError, match=r"'b.png' is not a readable image"):
        operations.load_upload(loaded, engine, [damaged], LIMITS)
    assert_unchanged(loaded, before)


def test_archive_junk_is_skipped_and_said_and_member_paths_cannot_climb_out(tmp_path, engine):
    members = {"__MACOSX/._a.png": b"\x00\x05", ".DS_Store": b"\x00", "../../x10.png": png_bytes(6, 5),
               "set/x2.png": png_bytes()}  # fmt: skip
    work = Work(folder=tmp_path / "w")
    message = operations.load_upload(work, engine, [zip_of(tmp_path / "mac.zip", members)], LIMITS)
    assert "Skipped 2 system file(s) in 'mac.zip'" in message
    assert work.video.frame_names == ("set/x2.png", "x10.png")  # name order, numbers by value
    (png,) = operations.export(work, ["png"], out_dir(tmp_path))
    with zipfile.ZipFile(png) as archive:
        assert sorted(archive.namelist()) == ["objects.json", "set/x2.png", "x10.png"]


def test_images_and_a_video_together_are_refused(tmp_path, engine, loaded, image_files):
    before = (loaded.video, loaded.doc, len(loaded.undo))
    video = media_factory.testsrc(tmp_path / "clip.mp4", size=(64, 48), fps=5, seconds=0.4)
    with pytest.raises(UserError, match=r"'clip.mp4' is a video .* Upload either one video, or images"):
        operations.load_upload(loaded, engine, [image_files[0], video], LIMITS)
    zipped = zip_of(tmp_path / "mixed.zip", {"a.png": png_bytes(), "clip.mp4": video.read_bytes()})
    with pytest.raises(UserError, match=r"'mixed.zip' holds 1 file\(s\) that are not images: 'clip.mp4'"):
        operations.load_upload(loaded, engine, [zipped], LIMITS)
    with pytest.raises(UserError, match=r"upload one video at a time"):
        operations.load_upload(loaded, engine, [video, video], LIMITS)
    assert_unchanged(loaded, before)


def test_ten_thousand_images_are_refused_naming_the_limit_and_the_option(tmp_path, engine, loaded):
    before = (loaded.video, loaded.doc, len(loaded.undo))
    tiny = png_bytes(1, 1)
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(10_000):
            archive.writestr(f"{i:05d}.png", tiny)
    with pytest.raises(UserError) as refused:
        operations.load_upload(loaded, engine, [path], LIMITS)
    assert str(refused.value) == (
        "This upload holds 10000 images; the limit is 600 frames (one image is one frame). Upload fewer "
        "images, or start the app with --max-frames 10000."
    )
    assert_unchanged(loaded, before)


def test_the_predictor_gives_each_frame_its_own_size_and_videos_are_unchanged(predictor):
    """A click in frame pixels maps to the same model input whatever the frame's size, and the
    masks come back at each frame's size; frames of one size keep the one size."""
    small, large = picture(80, 60, 0), picture(160, 120, 0)
    state = predictor.init_state([np.array(small), np.array(large)])
    assert state.frame_size(0) == (60, 80) and state.frame_size(1) == (120, 160)
    _, _, a = predictor.add_new_points_or_box(state, 0, 1, points=[[24, 20]], labels=[1])
    _, _, b = predictor.add_new_points_or_box(state, 1, 2, points=[[48, 40]], labels=[1])
    assert a.shape == (1, 1, 60, 80) and b.shape == (2, 1, 120, 160)
    shapes = {f: m.shape for f, _, m in predictor.propagate_in_video(state)}
    assert shapes == {0: (2, 1, 60, 80), 1: (2, 1, 120, 160)}
    assert predictor.prompt_candidates(state, 1, 2)[0].shape == (3, 1, 120, 160)


# ----------------------------------------------------------------------------- command line and app


@pytest.fixture(scope="module")
def replayed(reference_checkpoint: Path, image_files: list[Path]) -> dict[int, np.ndarray]:
    """What the app's and the command line's model (tiny, 512 px, float32) gives for a click on
    image 2, tracked forward then backward: the predictor driven directly."""
    by_name = {p.name: p for p in image_files}
    frames = [np.array(Image.open(by_name[name]).convert("RGB")) for name in ORDER]
    ref = Replay.start(reference_checkpoint, frames)
    ref.prompt(1, 1, [disc_centre("img2.png")], [1])
    ref.track(1, None, False)
    ref.track(1, None, True)
    return {frame: masks[1] for frame, masks in ref.masks.items()}


def assert_exports(png: Path, coco: Path, expected: dict[int, np.ndarray]) -> None:
    """PNG masks named after the images at their sizes, COCO read by pycocotools: both the predictor's masks."""
    with zipfile.ZipFile(png) as archive:
        assert sorted(archive.namelist()) == ["img1.png", "img10.png", "img2.png", "objects.json"]
        for frame, name in enumerate(ORDER):
            values = np.array(Image.open(archive.open(name.rsplit(".", 1)[0] + ".png")))
            assert values.shape[::-1] == IMAGES[name] and np.array_equal(values == 1, expected[frame]), name
    api = COCO(str(coco))
    for frame, name in enumerate(ORDER):
        assert (api.imgs[frame + 1]["file_name"], api.imgs[frame + 1]["width"]) == (name, IMAGES[name][0])
        (annotation,) = api.loadAnns(api.getAnnIds(imgIds=[frame + 1]))
        assert np.array_equal(api.annToMask(annotation).astype(bool), expected[frame]), name


def test_the_command_line_takes_a_folder_of_images(reference_checkpoint, tmp_path, image_files, replayed):
    """A folder is an image set; a prompts file's click is in image 2's own pixels; --images
    takes image files as one set, and refuses a video among them before the model loads."""
    prompts = tmp_path / "prompts.json"
    x, y = disc_centre("img2.png")
    prompts.write_text(json.dumps({"objects": [{"name": "disc", "prompts": [{"frame": 1, "points": [[x, y]]}]}]}))
    folder = image_files[0].parent
    run = cli(reference_checkpoint, folder, "--prompts", prompts, "--export", "png,coco", "--out", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert f"{folder.name}: done, 1 object(s), 3 of 3 frames tracked" in run.stdout, run.stdout
    stem = folder.name
    assert_exports(tmp_path / "out" / f"{stem}_masks.zip", tmp_path / "out" / f"{stem}_coco.json", replayed)

    video = media_factory.testsrc(tmp_path / "clip.mp4", size=(64, 48), fps=5, seconds=0.4)
    refused = cli(reference_checkpoint, *image_files, video, "--images", "--prompts", prompts)
    assert refused.returncode == 2 and "--images takes image files" in refused.stderr and "clip.mp4" in refused.stderr


def test_three_images_through_the_app_api(reference_checkpoint, tmp_path, image_files, replayed):
    """The real app: upload_files with three images, a click on image 2, tracking both ways,
    PNG masks and COCO downloaded: each mask at its image's size and name, the predictor's."""
    app = start_app(reference_checkpoint, tmp_path / "app", quick_close=True)
    c = Client(app.url, verbose=False, download_files=False)
    try:
        outputs = c.predict([handle_file(str(p)) for p in image_files], 0, None, api_name="/upload_files")
        assert "Loaded 3 images, of different sizes" in str(outputs[2]), outputs[2]
        assert "in name order" in str(outputs[8]) and "img1.jpg" in str(outputs[8])  # the video facts
        x, y = disc_centre("img2.png")
        assert c.predict(frame=1, x=x, y=y, positive=True, obj_id=1, api_name="/add_point")["areas"]["1"] > 0
        assert not c.predict(direction="both", frame=1, frames=0, api_name="/track")["error"]
        files = c.predict(["png", "coco"], api_name="/export")[-1]
        paths = []
        for file in files:
            target = tmp_path / Path(file["path"]).name
            url = f"{app.url}gradio_api/file={file['path']}"
            target.write_bytes(httpx.get(url, cookies=c.cookies, timeout=60).content)
            paths.append(target)
        refused = c.predict(["overlay"], api_name="/export")
        assert "the overlay video needs one size for all frames" in str(refused[2]), refused[2]
    finally:
        c.close()
        app.stop()
    assert [p.name for p in paths] == ["images_masks.zip", "images_coco.json"]
    assert_exports(paths[0], paths[1], replayed)
