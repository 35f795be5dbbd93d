"""Where each official SAM 2 / SAM 2.1 checkpoint comes from, and how to recognise a good copy.

Sizes and SHA-256 digests are those of the files published by Meta: the Git LFS pointers of the
Hugging Face repositories `facebook/sam2-hiera-*` and `facebook/sam2.1-hiera-*`, which match the
digests recorded for the same files at Meta's direct URLs. They let a download be verified, and
let a file already on disk be accepted by its size without re-hashing it on every start.
"""

from __future__ import annotations

from dataclasses import dataclass

from sam2.config import VARIANTS, long_name, resolve_variant

HF_ENDPOINT = "https://huggingface.co"
META_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2"
_META_RELEASE = {"sam2": "072824", "sam2.1": "092824"}  # Meta's folder per release (MMDDYY)
_HF_SIZE_NAMES = {"t": "tiny", "s": "small", "b+": "base-plus", "l": "large"}

# variant -> (size in bytes, SHA-256)
_FILES: dict[str, tuple[int, str]] = {
    "sam2_hiera_t": (155906050, "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125"),
    "sam2_hiera_s": (184309650, "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3"),
    "sam2_hiera_b+": (323493298, "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071"),
    "sam2_hiera_l": (897952466, "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b"),
    "sam2.1_hiera_t": (156008466, "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69"),
    "sam2.1_hiera_s": (184416285, "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38"),
    "sam2.1_hiera_b+": (323606802, "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5"),
    "sam2.1_hiera_l": (898083611, "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318"),
}


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file and its sources. `None` means unknown (or no such source)."""

    variant: str  # canonical name, a key of sam2.config.VARIANTS
    filename: str  # e.g. "sam2.1_hiera_tiny.pt"
    hf_repo: str | None  # e.g. "facebook/sam2.1-hiera-tiny"
    url: str | None  # Meta's direct download URL
    size_bytes: int | None
    sha256: str | None

    @property
    def hf_url(self) -> str | None:
        """The plain HTTPS address of the file on Hugging Face (for people and browsers)."""
        return f"{HF_ENDPOINT}/{self.hf_repo}/resolve/main/{self.filename}" if self.hf_repo else None

    @property
    def urls(self) -> tuple[str, ...]:
        """Every address the file can be downloaded from, preferred first."""
        return tuple(u for u in (self.hf_url, self.url) if u)


def _official(variant: str) -> CheckpointInfo:
    family, _, size = variant.rpartition("_hiera_")
    filename = f"{long_name(variant)}.pt"
    size_bytes, sha256 = _FILES[variant]
    return CheckpointInfo(
        variant=variant,
        filename=filename,
        hf_repo=f"facebook/{family}-hiera-{_HF_SIZE_NAMES[size]}",
        url=f"{META_BASE_URL}/{_META_RELEASE[family]}/{filename}",
        size_bytes=size_bytes,
        sha256=sha256,
    )


CHECKPOINTS: dict[str, CheckpointInfo] = {variant: _official(variant) for variant in VARIANTS}


def checkpoint_info(variant: str) -> CheckpointInfo:
    """The registry entry for a variant; short or long names work ('sam2.1_hiera_tiny')."""
    return CHECKPOINTS[resolve_variant(variant)]
