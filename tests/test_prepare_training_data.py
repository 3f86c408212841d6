"""scripts/prepare_training_data.py: hashes checked before anything is written, pairs laid
out as training reads them, bad input refused with exit code 2."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prepare_training_data.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_training_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _source_repository(folder: Path) -> tuple[Path, str, dict[str, str]]:
    """A git repository with one noisy/clean pair of 37x31 PNGs; its commit and hashes."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    clean = (rng.random((37, 31, 3)) * 200).astype(np.uint8)
    Image.fromarray(clean).save(folder / "scene_mean.png")
    Image.fromarray(clean + 20).save(folder / "scene_real.png")
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "pair"], check=True)
    commit = subprocess.run(
        [*git[:3], "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    hashes = {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in ("scene_real.png", "scene_mean.png")
    }
    return folder, commit, hashes


def _manifest(path: Path, commit: str, hashes: dict[str, str]) -> Path:
    rows = "\n".join(
        f"| toy | `{name}` | {digest} | 31x37 | x |" for name, digest in hashes.items()
    )
    path.write_text(
        "| source | repository | commit | licence |\n|---|---|---|---|\n"
        f"| toy | someone/toy | {commit} | CC0 |\n\n"
        "| source | path | sha256 | size | role |\n|---|---|---|---|---|\n" + rows + "\n"
    )
    return path


def test_pairs_are_checked_and_written_as_noisy_and_clean_folders(tmp_path, capsys):
    script = _load_script()
    repo, commit, hashes = _source_repository(tmp_path / "repo")
    manifest = _manifest(tmp_path / "pairs.md", commit, hashes)
    out = tmp_path / "pairs"
    argv = [str(repo), "--manifest", str(manifest), "--pairs", "_real", "_mean", "--out", str(out)]
    assert script.main(argv) == 0
    noisy = np.asarray(Image.open(out / "noisy" / "toy-scene.png"), np.int16)
    clean = np.asarray(Image.open(out / "clean" / "toy-scene.png"), np.int16)
    assert noisy.shape == clean.shape == (37, 31, 3)  # full size, never resized
    assert np.all(noisy - clean == 20)
    assert "22.11 dB PSNR" in capsys.readouterr().out  # 20 log10(255 / 20)


def test_a_wrong_hash_or_a_lone_file_is_refused_before_writing(tmp_path, capsys):
    script = _load_script()
    repo, commit, hashes = _source_repository(tmp_path / "repo")
    out = tmp_path / "pairs"
    wrong = dict(hashes, **{"scene_real.png": "0" * 64})
    argv = ["--pairs", "_real", "_mean", "--out", str(out), "--manifest"]
    assert script.main([str(repo), *argv, str(_manifest(tmp_path / "a.md", commit, wrong))]) == 2
    assert "does not match the manifest" in capsys.readouterr().err
    lone = {"scene_real.png": hashes["scene_real.png"]}
    assert script.main([str(repo), *argv, str(_manifest(tmp_path / "b.md", commit, lone))]) == 2
    assert "without a partner" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("max_side", ["512", "-1"])
def test_pairs_refuse_a_resize(tmp_path, capsys, max_side):
    script = _load_script()
    repo, commit, hashes = _source_repository(tmp_path / "repo")
    manifest = _manifest(tmp_path / "pairs.md", commit, hashes)
    argv = [str(repo), "--manifest", str(manifest), "--pairs", "_real", "_mean"]
    assert script.main([*argv, "--out", str(tmp_path / "o"), "--max-side", max_side]) == 2
    assert "--max-side" in capsys.readouterr().err


def _moved_pair(repo, hashes: dict, noisy: str, clean: str) -> tuple[str, dict]:
    """Move the toy pair to new names in a new commit: (its commit, the new hashes)."""
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "mv", "scene_real.png", noisy], check=True)
    subprocess.run([*git, "mv", "scene_mean.png", clean], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "moved"], check=True)
    commit = subprocess.run(
        [*git[:3], "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return commit, {noisy: hashes["scene_real.png"], clean: hashes["scene_mean.png"]}


def test_pairs_named_by_prefix(tmp_path, capsys):
    """``--pair-by prefix``: the markers start the names (``Noisy_X`` / ``Mean_X``)."""
    script = _load_script()
    repo, _, hashes = _source_repository(tmp_path / "repo")
    commit, renamed = _moved_pair(repo, hashes, "Noisy_scene.png", "Mean_scene.png")
    manifest = _manifest(tmp_path / "pairs.md", commit, renamed)
    out = tmp_path / "pairs"
    argv = [str(repo), "--manifest", str(manifest), "--pairs", "Noisy_", "Mean_", "--out", str(out)]
    assert script.main(argv) == 2  # by suffix (the default) neither name fits
    assert "ends with neither pair suffix" in capsys.readouterr().err
    assert not out.exists()
    assert script.main([*argv, "--pair-by", "prefix"]) == 0
    noisy = np.asarray(Image.open(out / "noisy" / "toy-scene.png"), np.int16)
    clean = np.asarray(Image.open(out / "clean" / "toy-scene.png"), np.int16)
    assert np.all(noisy - clean == 20)


def test_pairs_named_by_folder(tmp_path):
    """``--pair-by folder``: ``scene/noisy.png`` and ``scene/clean.png`` make the pair
    ``scene``; a name that is not a marker is refused."""
    script = _load_script()
    repo, _, hashes = _source_repository(tmp_path / "repo")
    (repo / "scene").mkdir()
    commit, moved = _moved_pair(repo, hashes, "scene/noisy.png", "scene/clean.png")
    manifest = _manifest(tmp_path / "pairs.md", commit, moved)
    out = tmp_path / "pairs"
    argv = [str(repo), "--manifest", str(manifest), "--out", str(out), "--pair-by", "folder"]
    assert script.main([*argv, "--pairs", "noisy", "mean"]) == 2  # clean.png is no marker
    assert not out.exists()
    assert script.main([*argv, "--pairs", "noisy", "clean"]) == 0
    noisy = np.asarray(Image.open(out / "noisy" / "toy-scene.png"), np.int16)
    clean = np.asarray(Image.open(out / "clean" / "toy-scene.png"), np.int16)
    assert np.all(noisy - clean == 20)
