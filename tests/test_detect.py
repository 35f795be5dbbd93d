"""The text detector (annotation.detect) on the real transformers architectures, offline.

Grounding DINO and OWLv2 are built from small configs with seeded random weights, with a
tokenizer made from a vocabulary written here, saved with ``save_pretrained`` and loaded back
through ``Detector.load(DetectorSpec(folder))`` exactly as a user's folder. The boxes are
checked against what transformers' own processor and post-processing give for the same model
and inputs, computed here directly.
"""

from __future__ import annotations

import argparse
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.detect import (
    DEFAULT_DETECTOR,
    GROUNDING_DINO_THRESHOLDS,
    KNOWN_DETECTORS,
    MAX_PHRASE_CHARS,
    MAX_PHRASES,
    OWLV2_THRESHOLDS,
    Detection,
    Detector,
    DetectorSpec,
    DetectorUnavailable,
    clean_phrases,
    parse_phrases,
)
from annotation.document import UserError
from annotation.options import add_detector_arguments
from tests.detectors import GD_WORDS, save_grounding_dino, save_owlv2

ROOT = Path(__file__).resolve().parents[1]
FRAME_HW = (60, 90)  # not square: OWLv2 pads it, both processors resize it
PHRASES = ["person", "red car", "dog"]


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def grounding_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_grounding_dino(tmp_path_factory.mktemp("grounding_dino"))


@pytest.fixture(scope="module")
def owl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="module")
def grounding(grounding_folder: Path) -> Detector:
    return Detector.load(DetectorSpec(str(grounding_folder)))


@pytest.fixture(scope="module")
def owl(owl_folder: Path) -> Detector:
    return Detector.load(DetectorSpec(str(owl_folder)))


def _reference(folder: Path) -> tuple:
    """transformers' own processor and model from the folder, loaded directly."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder)
    return AutoProcessor.from_pretrained(folder, backend="pil"), model


def _clipped(box: list[float]) -> tuple[float, float, float, float] | None:
    height, width = FRAME_HW
    x0, x1 = (min(max(v, 0.0), width) for v in (box[0], box[2]))
    y0, y1 = (min(max(v, 0.0), height) for v in (box[1], box[3]))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _as_rows(found: list[Detection]) -> list[tuple]:
    return sorted((d.phrase, round(d.score, 5), *(round(v, 3) for v in d.box)) for d in found)


# ----------------------------------------------------------------------------- phrases


def test_phrases_are_split_cleaned_and_deduplicated() -> None:
    assert parse_phrases("person, red car") == ["person", "red car"]
    messy = "  person ,red   car,, Person, dog. cat;\nbike "
    assert parse_phrases(messy) == ["person", "red car", "dog", "cat", "bike"]
    assert clean_phrases([" a  b ", "A B", "", "c"]) == ["a b", "c"]


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("", ["Type what to find", "commas"]),
        (" , ,. ", ["Type what to find"]),
        (", ".join(f"thing {i}" for i in range(500)), ["500 phrases", f"at most {MAX_PHRASES}"]),
        ("x" * (MAX_PHRASE_CHARS + 1), [f"{MAX_PHRASE_CHARS + 1} characters", f"at most {MAX_PHRASE_CHARS}"]),
    ],
    ids=["empty", "only-commas", "500-phrases", "too-long"],
)
def test_bad_prompts_are_refused_in_words(prompt: str, words: list[str]) -> None:
    with pytest.raises(UserError) as error:
        parse_phrases(prompt)
    for word in words:
        assert word in str(error.value)


def test_a_list_of_phrases_is_checked_the_same_way(grounding: Detector, frame: np.ndarray) -> None:
    with pytest.raises(UserError, match="500 phrases"):
        grounding.detect(frame, [f"thing {i}" for i in range(500)])
    with pytest.raises(UserError, match="full stop"):
        grounding.detect(frame, ["st. bernard"])
    with pytest.raises(UserError, match="Type what to find"):
        grounding.detect(frame, ["  "])


# ----------------------------------------------------------------------------- Grounding DINO


def _grounding_reference(folder: Path, frame: np.ndarray, box: float, text: float) -> list[tuple]:
    """Boxes and scores from transformers' post-processing, each named by the phrase whose best
    token scores highest (the phrase's tokens found by tokenising each phrase on its own)."""
    processor, model = _reference(folder)
    inputs = processor(images=frame, text=PHRASES, return_tensors="pt")  # the documented list form
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_grounded_object_detection(
        outputs, inputs.input_ids, threshold=box, text_threshold=text, target_sizes=[FRAME_HW]
    )[0]
    ids = inputs.input_ids[0].tolist()
    positions, cursor = [], 1  # after [CLS]
    for phrase in PHRASES:
        pieces = processor.tokenizer(phrase, add_special_tokens=False).input_ids
        assert ids[cursor : cursor + len(pieces)] == pieces
        positions.append(list(range(cursor, cursor + len(pieces))))
        cursor += len(pieces) + 1  # and the "."
    probs = outputs.logits[0].sigmoid()
    kept = probs.max(-1).values > box
    rows = []
    for token_probs, score, corners in zip(probs[kept], result["scores"], result["boxes"].tolist(), strict=True):
        best = [float(token_probs[p].max()) for p in positions]
        j = int(np.argmax(best))
        clipped = _clipped(corners)
        if best[j] > text and clipped is not None:
            rows.append((PHRASES[j], round(float(score), 5), *(round(v, 3) for v in clipped)))
    return sorted(rows)


def test_grounding_dino_boxes_equal_transformers_post_processing(
    grounding: Detector, grounding_folder: Path, frame: np.ndarray
) -> None:
    assert grounding.kind == "grounding-dino" and grounding.defaults == GROUNDING_DINO_THRESHOLDS
    found = grounding.detect(frame, PHRASES, box_threshold=0.3, text_threshold=0.25)
    expected = _grounding_reference(grounding_folder, frame, 0.3, 0.25)
    assert len(expected) >= 3 and len({row[0] for row in expected}) >= 2  # several boxes, several phrases
    assert _as_rows(found) == expected
    height, width = FRAME_HW
    for d in found:
        assert 0 <= d.x0 < d.x1 <= width and 0 <= d.y0 < d.y1 <= height
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_grounding_dino_thresholds_are_honoured(grounding: Detector, grounding_folder: Path, frame: np.ndarray) -> None:
    everything = grounding.detect(frame, PHRASES, box_threshold=0.0, text_threshold=0.0)
    scores = sorted({d.score for d in everything if d.score < 1.0})
    assert len(scores) >= 3, "the random model should give a spread of scores"
    cut = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    above = grounding.detect(frame, PHRASES, box_threshold=cut, text_threshold=0.0)
    assert above and all(d.score > cut for d in above)
    assert _as_rows(above) == sorted(row for row in _as_rows(everything) if row[1] > cut)
    assert _as_rows(above) == _grounding_reference(grounding_folder, frame, cut, 0.0)
    assert grounding.detect(frame, PHRASES, box_threshold=1.0) == []
    assert grounding.detect(frame, PHRASES, box_threshold=0.0, text_threshold=1.0) == []  # no token scores above 1
    assert _as_rows(grounding.detect(frame, PHRASES)) == _grounding_reference(grounding_folder, frame, 0.35, 0.25)


def test_mm_grounding_dino_boxes_equal_transformers_post_processing(tmp_path: Path, frame: np.ndarray) -> None:
    folder = save_grounding_dino(tmp_path, "mm-grounding-dino")
    detector = Detector.load(DetectorSpec(str(folder)))
    assert detector.kind == "mm-grounding-dino" and detector.defaults == GROUNDING_DINO_THRESHOLDS
    scores = sorted(d.score for d in detector.detect(frame, PHRASES, box_threshold=0.0, text_threshold=0.0))
    cut = float(np.median(scores))  # its random weights score lower than Grounding DINO's
    expected = _grounding_reference(folder, frame, cut, 0.0)
    assert len(expected) >= 3 and len({row[0] for row in expected}) >= 2
    assert _as_rows(detector.detect(frame, PHRASES, box_threshold=cut, text_threshold=0.0)) == expected


def test_grounding_dino_prompt_longer_than_the_model_reads_is_refused(grounding: Detector, frame: np.ndarray) -> None:
    phrases = [f"{a} {b}" for a in GD_WORDS[:4] for b in GD_WORDS[4:8]]  # 16 phrases, 49 tokens > 32
    with pytest.raises(UserError, match="at most 32"):
        grounding.detect(frame, phrases)


# ----------------------------------------------------------------------------- OWLv2


def _owl_reference(folder: Path, frame: np.ndarray, box: float) -> list[tuple]:
    processor, model = _reference(folder)
    inputs = processor(images=frame, text=[PHRASES], return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_grounded_object_detection(
        outputs, threshold=box, target_sizes=[FRAME_HW], text_labels=[PHRASES]
    )[0]
    rows = []
    for score, label, name, corners in zip(result["scores"].tolist(), result["labels"].tolist(),
                                           result["text_labels"], result["boxes"].tolist(), strict=True):  # fmt: skip
        assert name == PHRASES[label]
        clipped = _clipped(corners)
        if clipped is not None:
            rows.append((name, round(score, 5), *(round(v, 3) for v in clipped)))
    return sorted(rows)


def test_owlv2_boxes_equal_transformers_post_processing(owl: Detector, owl_folder: Path, frame: np.ndarray) -> None:
    assert owl.kind == "owlv2" and owl.defaults == OWLV2_THRESHOLDS and not owl.supports_text_threshold
    expected = _owl_reference(owl_folder, frame, 0.1)
    assert len(expected) >= 3 and len({row[0] for row in expected}) >= 2
    assert _as_rows(owl.detect(frame, PHRASES)) == expected
    assert _as_rows(owl.detect(frame, PHRASES, text_threshold=0.99)) == expected  # OWLv2 has no text threshold


def test_owlv2_thresholds_are_honoured(owl: Detector, owl_folder: Path, frame: np.ndarray) -> None:
    everything = owl.detect(frame, PHRASES, box_threshold=0.0)
    scores = sorted({d.score for d in everything if d.score < 1.0})
    assert len(scores) >= 3
    cut = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    above = owl.detect(frame, PHRASES, box_threshold=cut)
    assert above and all(d.score > cut for d in above)
    assert _as_rows(above) == _owl_reference(owl_folder, frame, cut)
    assert owl.detect(frame, PHRASES, box_threshold=1.0) == []


def test_owlv2_phrase_longer_than_the_model_reads_is_refused(owl: Detector, frame: np.ndarray) -> None:
    with pytest.raises(UserError, match="at most 16 per phrase"):
        owl.detect(frame, ["abcdefghijklmnopq"])  # 17 letters: 19 tokens with the start and end


# ----------------------------------------------------------------------------- thresholds, precision


@pytest.mark.parametrize("value", [-0.1, 1.5, math.nan, math.inf, True, "0.3"])
def test_thresholds_outside_0_to_1_are_refused_in_words(grounding: Detector, frame: np.ndarray, value: object) -> None:
    with pytest.raises(UserError, match="box threshold must be a number from 0 to 1"):
        grounding.detect(frame, PHRASES, box_threshold=value)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="text threshold must be a number from 0 to 1"):
        grounding.detect(frame, PHRASES, text_threshold=value)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="box threshold"):
        Detector.load(DetectorSpec("no/such-detector", box_threshold=value))  # type: ignore[arg-type]


def test_spec_thresholds_replace_the_published_defaults(grounding_folder: Path, frame: np.ndarray) -> None:
    detector = Detector.load(DetectorSpec(str(grounding_folder), box_threshold=0.5, text_threshold=0.4))
    assert (detector.defaults.box, detector.defaults.text) == (0.5, 0.4)
    assert _as_rows(detector.detect(frame, PHRASES)) == _grounding_reference(grounding_folder, frame, 0.5, 0.4)


def test_bfloat16_runs_and_boxes_stay_in_the_frame(grounding_folder: Path, frame: np.ndarray) -> None:
    detector = Detector.load(DetectorSpec(str(grounding_folder), precision="bfloat16"))
    assert next(detector._model.parameters()).dtype == torch.bfloat16
    found = detector.detect(frame, PHRASES, box_threshold=0.0, text_threshold=0.0)
    assert found and all(0 <= d.x0 < d.x1 <= FRAME_HW[1] and d.phrase in PHRASES for d in found)


# ----------------------------------------------------------------------------- folders and downloads


def test_folders_that_are_no_detector_are_refused_in_words(tmp_path: Path, grounding_folder: Path) -> None:
    from transformers import BertConfig

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DetectorUnavailable, match="has no config.json"):
        Detector.load(DetectorSpec(str(empty)))

    bert = tmp_path / "bert"
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32).save_pretrained(bert)
    with pytest.raises(DetectorUnavailable, match="holds a bert model, not a detector"):
        Detector.load(DetectorSpec(str(bert)))

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(DetectorUnavailable, match="is damaged"):
        Detector.load(DetectorSpec(str(broken)))

    with pytest.raises(DetectorUnavailable, match="There is no detector folder"):
        Detector.load(DetectorSpec(str(tmp_path / "missing" / "folder")))
    with pytest.raises(DetectorUnavailable, match="is a file"):
        Detector.load(DetectorSpec(str(grounding_folder / "config.json")))


def _copy_without(source: Path, target: Path, *skip: str) -> Path:
    target.mkdir()
    for path in source.iterdir():
        if path.name not in skip:
            (target / path.name).write_bytes(path.read_bytes())
    return target


def test_missing_or_damaged_weights_are_refused_in_words(tmp_path: Path, grounding_folder: Path) -> None:
    no_weights = _copy_without(grounding_folder, tmp_path / "no_weights", "model.safetensors")
    with pytest.raises(DetectorUnavailable, match="has no model.safetensors"):
        Detector.load(DetectorSpec(str(no_weights)))

    truncated = _copy_without(grounding_folder, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(DetectorUnavailable, match="weights are missing, incomplete or damaged"):
        Detector.load(DetectorSpec(str(truncated)))

    no_tokenizer = _copy_without(grounding_folder, tmp_path / "no_tokenizer", "vocab.txt", "tokenizer.json",
                                 "tokenizer_config.json")  # fmt: skip
    with pytest.raises(DetectorUnavailable, match="has no tokenizer files"):
        Detector.load(DetectorSpec(str(no_tokenizer)))

    no_processor = _copy_without(grounding_folder, tmp_path / "no_processor", "processor_config.json")
    with pytest.raises(DetectorUnavailable, match="processor files"):
        Detector.load(DetectorSpec(str(no_processor)))


def _assert_download_instructions(message: str) -> None:
    known = KNOWN_DETECTORS[DEFAULT_DETECTOR]
    assert f"https://huggingface.co/{DEFAULT_DETECTOR}/tree/{known.revision}" in message
    assert f"about {known.size_mb} MB" in message and "model.safetensors" in message
    assert "--detector FOLDER" in message and "the rest of the app works without it" in message


def test_a_missing_model_offline_fails_fast_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(DetectorUnavailable) as error:
        Detector.load(DetectorSpec(cache_dir=tmp_path))
    assert time.monotonic() - started < 10
    assert "offline mode" in str(error.value)
    _assert_download_instructions(str(error.value))


def test_loading_a_folder_or_offline_never_touches_the_network(
    grounding_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert Detector.load(DetectorSpec(str(grounding_folder))).kind == "grounding-dino"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DetectorUnavailable, match="offline mode"):
        Detector.load(DetectorSpec(cache_dir=tmp_path))
    assert attempts == []


def _internet_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_no_network_fails_fast_with_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path on a machine without internet (CI here): no hang, a useful message."""
    if _internet_reachable():
        pytest.skip("this machine reaches huggingface.co: the test would download 690 MB")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(DetectorUnavailable) as error:
        Detector.load(DetectorSpec(cache_dir=tmp_path), progress=False)
    assert time.monotonic() - started < 20
    _assert_download_instructions(str(error.value))


def test_the_default_is_pinned_to_a_commit() -> None:
    spec = DetectorSpec()
    assert spec.model == DEFAULT_DETECTOR == "IDEA-Research/grounding-dino-tiny"
    assert len(spec.pinned_revision()) == 40 and int(spec.pinned_revision(), 16) >= 0
    assert DetectorSpec(revision="v1").pinned_revision() == "v1"
    assert DetectorSpec("someone/other").pinned_revision() == "main"


# ----------------------------------------------------------------------------- options, imports


def test_detector_option() -> None:
    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    assert parser.parse_args([]).detector == DEFAULT_DETECTOR
    assert parser.parse_args(["--detector", "/models/owl"]).detector == "/models/owl"


def test_importing_the_module_loads_neither_torch_nor_transformers() -> None:
    """The page can use parse_phrases and the thresholds without the model's libraries."""
    code = "import sys, annotation.detect; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_device_this_machine_lacks_is_refused_in_words(grounding_folder: Path) -> None:
    """A GPU that is not there (torch without CUDA asserts; with CUDA, the ordinal is out of range)."""
    with pytest.raises(DetectorUnavailable, match="cannot run on the device cuda:99"):
        Detector.load(DetectorSpec(str(grounding_folder), device="cuda:99"))
