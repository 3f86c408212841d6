"""Prepare the extra training photographs listed in ``docs/training-data.md``::

    python scripts/prepare_training_data.py /work/.mirror/SqueezeSoftware+test_files/repo

Each argument is a git directory (a ``fetch`` mirror, or a clone) of a source repository
of the manifest. Every listed file is read at the recorded commit, its SHA-256 checked
against the manifest (any mismatch or missing file: one line and exit code 2, before
anything is written), then written as PNG to ``OUT`` (default ``../data/extra-train``
beside the repository, outside git), down-scaled so its longer side is at most
``--max-side`` pixels (0 keeps the full size). Files already in ``OUT`` are left as they
are. ``--compare-with`` folders (e.g. the test sets) are searched for near-duplicates of
the prepared images (32x32 thumbnails, correlation > 0.95): any is reported and the run
fails, so a test image never becomes training data.

Pairs of real noisy and clean images (``docs/real-noise-pairs.md``) keep their full size
and go to ``OUT/noisy/NAME.png`` and ``OUT/clean/NAME.png`` (the layout
``TrainConfig.pairs_dir`` reads); ``--pairs NOISY_SUFFIX CLEAN_SUFFIX`` says which file
is which by the end of its name (``--pair-by prefix``: by its start; ``folder``: by
the whole name, a pair sharing its folder)::

    python scripts/prepare_training_data.py /work/.mirror/csjunxu+MCWNNM-ICCV2017/repo \
        --manifest docs/real-noise-pairs.md --pairs _real _mean --out ../data/real-pairs-cc15
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = REPO_ROOT / "docs" / "training-data.md"
DEFAULT_OUT = REPO_ROOT.parent / "data" / "extra-train"
_SHA = r"[0-9a-f]{64}"
_COMMIT = r"[0-9a-f]{40}"


@dataclass(frozen=True)
class Source:
    name: str
    repository: str
    commit: str
    licence: str


@dataclass(frozen=True)
class Entry:
    source: str
    path: str
    sha256: str


class PrepareError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def read_manifest(text: str) -> tuple[dict[str, Source], list[Entry]]:
    """The sources table and the files table of the manifest's markdown.

    Rows are recognised by their shape: ``| name | owner/repo | 40-hex commit | licence |``
    and ``| name | `path` | 64-hex sha256 | ... |``.
    """
    sources: dict[str, Source] = {}
    entries: list[Entry] = []
    source_row = re.compile(
        rf"^\|\s*(\S+)\s*\|\s*(\S+/\S+)\s*\|\s*({_COMMIT})\s*\|\s*([^|]+?)\s*\|"
    )
    file_row = re.compile(rf"^\|\s*(\S+)\s*\|\s*`([^`]+)`\s*\|\s*({_SHA})\s*\|")
    for line in text.splitlines():
        if match := source_row.match(line):
            name, repository, commit, licence = match.groups()
            sources[name] = Source(name, repository, commit, licence)
        elif match := file_row.match(line):
            entries.append(Entry(*match.groups()))
    unknown = sorted({e.source for e in entries} - sources.keys())
    if not entries or unknown:
        problem = "no files listed" if not entries else "unknown sources " + ", ".join(unknown)
        raise PrepareError(f"manifest: {problem}")
    return sources, entries


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True)


def find_directory(source: Source, directories: list[Path]) -> Path | None:
    """The first of ``directories`` whose git history holds the source's commit."""
    for directory in directories:
        if _git(directory, "cat-file", "-e", f"{source.commit}^{{commit}}").returncode == 0:
            return directory
    return None


def read_checked(directory: Path, source: Source, entry: Entry) -> bytes:
    """The bytes of ``entry`` at the source's commit; a missing file or another hash fails."""
    result = _git(directory, "cat-file", "blob", f"{source.commit}:{entry.path}")
    if result.returncode != 0:
        raise PrepareError(f"{entry.path}: not in {directory} at {source.commit[:12]}")
    digest = hashlib.sha256(result.stdout).hexdigest()
    if digest != entry.sha256:
        raise PrepareError(
            f"{entry.path}: SHA-256 {digest[:16]}... does not match the manifest's "
            f"{entry.sha256[:16]}...; refusing to use it"
        )
    return result.stdout


def downscaled(data: bytes, max_side: int) -> Image.Image:
    """Decoded RGB image, upright per its EXIF orientation, longer side <= ``max_side``."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    scale = max_side / max(image.size) if max_side else 1.0
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.LANCZOS, reducing_gap=3.0)
    return image


def output_name(
    entry: Entry, pairs: tuple[str, str] | None = None, *, pair_by: str = "suffix"
) -> str:
    """The prepared file's path under ``OUT``: one folder of PNGs, or with ``pairs``
    (noisy and clean markers that end the file stems, start them with ``pair_by``
    ``"prefix"``, or are the whole stems with ``"folder"``) ``noisy/NAME.png`` or
    ``clean/NAME.png``, NAME the stem less its marker (with ``"folder"``: the name of the
    folder that holds the file, e.g. ``batch7/noisy.bmp`` and ``batch7/clean.bmp``)."""
    stem = Path(entry.path).stem
    if pairs is None:
        return f"{entry.source}-{stem}.png"
    for folder, marker in zip(("noisy", "clean"), pairs, strict=True):
        if pair_by == "suffix" and stem.endswith(marker):
            return f"{folder}/{entry.source}-{stem[: -len(marker)]}.png"
        if pair_by == "prefix" and stem.startswith(marker):
            return f"{folder}/{entry.source}-{stem[len(marker) :]}.png"
        if pair_by == "folder" and stem == marker:
            return f"{folder}/{entry.source}-{Path(entry.path).parent.name}.png"
    where = {"suffix": "ends", "prefix": "starts", "folder": "is"}[pair_by]
    raise PrepareError(
        f"{entry.path}: its name {where} with neither pair {pair_by} {' nor '.join(pairs)}"
    )


def check_pairs(names: list[str]) -> None:
    """Every noisy file has its clean file and the other way round."""
    noisy = {Path(n).name for n in names if n.startswith("noisy/")}
    clean = {Path(n).name for n in names if n.startswith("clean/")}
    if noisy != clean:
        alone = sorted(noisy ^ clean)
        raise PrepareError(f"manifest: {len(alone)} files without a partner, e.g. {alone[0]}")


def thumbnail(path: Path) -> np.ndarray:
    """32x32 gray thumbnail, zero mean and unit norm (for near-duplicate search)."""
    with Image.open(path) as image:
        small = np.asarray(image.convert("L").resize((32, 32), Image.BILINEAR), np.float64)
    small = small - small.mean()
    return small.ravel() / max(np.linalg.norm(small), 1e-12)


def near_duplicates(prepared: list[Path], folders: list[Path], threshold: float = 0.95):
    """(prepared file, test file, correlation) for every pair above ``threshold``.

    Compares whole-image thumbnails, also rotated by 90 degrees (portrait/landscape):
    this finds copies and re-encodings of a test image, not small crops of one.
    """
    ours = [(p, thumbnail(p)) for p in prepared]
    hits = []
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                theirs = thumbnail(path)
            except OSError:
                continue  # not an image
            turned = np.rot90(theirs.reshape(32, 32)).ravel()
            for mine, vector in ours:
                score = max(float(vector @ theirs), float(vector @ turned))
                if score > threshold:
                    hits.append((mine, path, score))
    return hits


def pairs_psnr(out: Path, names: list[str]) -> float:
    """Mean PSNR (dB, 8-bit, all channels) of the prepared noisy images against their
    clean ones: how noisy the pairs are."""
    values = []
    for name in names:
        if name.startswith("noisy/"):
            noisy = np.asarray(Image.open(out / name), np.float64)
            clean = np.asarray(Image.open(out / "clean" / Path(name).name), np.float64)
            if noisy.shape != clean.shape:
                raise PrepareError(f"{name}: {noisy.shape} but its clean image is {clean.shape}")
            values.append(10 * np.log10(255.0**2 / np.mean((noisy - clean) ** 2)))
    return float(np.mean(values))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path, help="git directories of the sources")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"(default {DEFAULT_OUT})")
    parser.add_argument(
        "--max-side", type=int, help="longer side in px (0: full; default 1536, pairs 0)"
    )
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--compare-with", type=Path, nargs="*", default=[], metavar="FOLDER")
    parser.add_argument(
        "--pairs", nargs=2, metavar=("NOISY_SUFFIX", "CLEAN_SUFFIX"), help="real noise pairs"
    )
    parser.add_argument(
        "--pair-by",
        choices=("suffix", "prefix", "folder"),
        default="suffix",
        help="the --pairs markers end (default), start or are the file names (folder: "
        "a pair shares its folder, whose name names it)",
    )
    args = parser.parse_args(argv)
    pairs = tuple(args.pairs) if args.pairs else None
    try:
        if pairs and args.max_side:
            raise PrepareError("--max-side: pairs keep their size (resizing changes real noise)")
        if args.max_side is None:
            args.max_side = 0 if pairs else 1536
        if args.max_side < 0:
            raise PrepareError(f"--max-side: must be 0 or positive, got {args.max_side}")
        out = args.out.resolve()
        if out == REPO_ROOT or REPO_ROOT in out.parents:
            raise PrepareError(f"--out: {out} is inside the repository; images stay outside git")
        sources, entries = read_manifest(args.manifest.read_text())
        names = [output_name(e, pairs, pair_by=args.pair_by) for e in entries]
        if pairs:
            check_pairs(names)
        directories = {}
        for name in sorted({e.source for e in entries}):
            directory = find_directory(sources[name], args.sources)
            if directory is None:
                source = sources[name]
                raise PrepareError(
                    f"no given directory holds {source.repository}@{source.commit[:12]}"
                    " (fetch it and pass its git directory)"
                )
            directories[name] = directory
        # Check every hash before writing anything.
        checked = [(e, read_checked(directories[e.source], sources[e.source], e)) for e in entries]
        written = kept = 0
        for (_, data), name in zip(checked, names, strict=True):
            target = out / name
            if target.exists():
                kept += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            downscaled(data, args.max_side).save(target)
            written += 1
        print(f"{out}: {written} written, {kept} already there, {len(entries)} in the manifest")
        if pairs:
            print(f"noisy against clean: {pairs_psnr(out, names):.2f} dB PSNR on average")
        prepared = [out / name for name in names]
        hits = near_duplicates(prepared, args.compare_with) if args.compare_with else []
        for mine, theirs, score in hits:
            print(f"near-duplicate: {mine.name} ~ {theirs} (correlation {score:.3f})")
        if args.compare_with:
            folders = ", ".join(map(str, args.compare_with))
            print(f"compared with {folders}: {len(hits)} near-duplicates")
        if hits:
            raise PrepareError(
                "near-duplicates of test images found; remove them from the manifest"
            )
    except (PrepareError, OSError) as exc:
        print(f"filterscope: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
