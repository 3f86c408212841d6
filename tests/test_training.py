"""Training loop: recipes, patch sampling, exact resume, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import make_image_folder, tiny_train_config
from filterscope import load_checkpoint
from filterscope.blur import gaussian_blur
from filterscope.errors import CheckpointError, InputError
from filterscope.training import PatchSampler, TrainConfig, load_recipe, train
from filterscope.training.trainer import learning_rate, make_batch

_image_folder = make_image_folder


_tiny_config = tiny_train_config


def _straight_and_resumed(config, folder: Path, *, kill_after: int):
    """The model of ``config`` trained straight through, and the state dict of the same
    run killed after step ``kill_after`` (a checkpoint step) and resumed."""
    train(config, folder / "straight", progress=False)

    def kill(step: int, loss: float) -> None:
        if step == kill_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, folder / "killed", progress=False, callback=kill)
    train(config, folder / "killed", resume=True, progress=False)
    straight = load_checkpoint(folder / "straight" / "model.safetensors")
    return straight, load_checkpoint(folder / "killed" / "model.safetensors").state_dict()


def test_patch_sampler_is_reproducible_and_bounded(tmp_path):
    data = _image_folder(tmp_path / "data")
    sampler = PatchSampler(data, patch_size=16, channels=1)
    first = sampler.sample(5, torch.Generator().manual_seed(1))
    second = sampler.sample(5, torch.Generator().manual_seed(1))
    assert first.shape == (5, 1, 16, 16)
    assert torch.equal(first, second)
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0


def test_learning_rate_schedule_steps_at_milestones():
    config = TrainConfig(steps=100, lr=1e-3, lr_milestones=[0.5, 0.75], lr_gamma=0.5)
    assert learning_rate(config, 0) == pytest.approx(1e-3)
    assert learning_rate(config, 50) == pytest.approx(5e-4)
    assert learning_rate(config, 99) == pytest.approx(2.5e-4)


def test_train_writes_model_card_and_loadable_weights(tmp_path):
    data = _image_folder(tmp_path / "data")
    result = train(_tiny_config(data), tmp_path / "run", progress=False)
    assert result["step"] == 6
    model = load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert model.arch == "dncnn" and model.bias is False
    assert model.card["training"]["sigma_range_255"] == [0.0, 55.0]
    assert "val_psnr_25" in model.card["metrics"]["validation"]
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch,loss,lr")


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    data = _image_folder(tmp_path / "data")
    straight, resumed = _straight_and_resumed(_tiny_config(data), tmp_path, kill_after=4)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed[key]), key


def test_existing_run_is_not_overwritten_without_resume(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with pytest.raises(InputError, match="resume"):
        train(_tiny_config(data, steps=3), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_resume_with_another_architecture_is_refused(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "run", progress=False)
    other = _tiny_config(data, steps=3, bias=True)
    with pytest.raises(CheckpointError, match="bias"):
        train(other, tmp_path / "run", resume=True, progress=False)


def test_recipe_unknown_key_is_named(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('arch = "dncnn"\nlearning_rat = 0.1\n')
    with pytest.raises(InputError, match="learning_rat"):
        load_recipe(recipe)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sigma_range = [-5.0, 10.0]", "sigma_range"),
        ("batch_size = 0", "batch_size"),
        ('arch = "resnet"', "arch"),
        ("lr = -1.0", "lr"),
        ("steps = 2.5", "steps"),
        ('bias = "no"', "bias"),
        ("blur_range = [3.0, 1.0]", "blur_range"),
        ('lr_schedule = "cosine"', "lr_schedule"),
        ("epochs = 5", "epoch_patches"),
        ("sigma_range = [1.0]", "sigma_range"),
    ],
)
def test_recipe_impossible_values_and_wrong_types_are_named(tmp_path, text, key):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text + "\n")
    with pytest.raises(InputError, match=key):
        load_recipe(recipe)


def test_patch_larger_than_every_image_fails_before_training(tmp_path):
    data = _image_folder(tmp_path / "data")
    with pytest.raises(InputError, match="patch_size"):
        train(_tiny_config(data, patch_size=64), tmp_path / "run", progress=False)


def test_empty_data_folder_fails_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        train(_tiny_config(tmp_path / "empty"), tmp_path / "run", progress=False)


def test_corrupt_training_image_is_reported_and_skipped(tmp_path, capsys):
    data = _image_folder(tmp_path / "data")
    (data / "broken.png").write_bytes(b"not a png at all")
    sampler = PatchSampler(data, patch_size=16, channels=1, scales=(1.0,))
    assert len(sampler.entries) == 3
    assert [Path(p).name for p in sampler.skipped] == ["broken.png"]
    assert "broken.png" in capsys.readouterr().err


def test_bounded_cache_gives_the_same_patches_as_a_full_one(tmp_path):
    data = _image_folder(tmp_path / "data", count=4)
    full = PatchSampler(data, patch_size=16, channels=1)
    # Room for about one scaled image: the others are read again from disk when drawn.
    small = PatchSampler(data, patch_size=16, channels=1, cache_mb=41 * 37 * 4 / 2**20)
    assert small.cached_megabytes <= 41 * 37 * 4 / 2**20
    for seed in range(3):
        a = full.sample(7, torch.Generator().manual_seed(seed))
        b = small.sample(7, torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
    assert small.cached_megabytes <= 41 * 37 * 4 / 2**20


def test_shards_split_the_images_between_processes(tmp_path):
    data = _image_folder(tmp_path / "data", count=5)
    shards = [
        PatchSampler(data, patch_size=16, channels=1, shard=(rank, 2)).files for rank in (0, 1)
    ]
    assert [p.name for p in shards[0]] == ["img0.png", "img2.png", "img4.png"]
    assert [p.name for p in shards[1]] == ["img1.png", "img3.png"]


def test_make_batch_blurs_before_the_noise_and_keeps_the_clean_target(tmp_path):
    data = _image_folder(tmp_path / "data")
    sampler = PatchSampler(data, patch_size=16, channels=1)
    config = _tiny_config(data, sigma_range=[0.0, 0.0], blur_range=[2.0, 2.0])
    noisy, clean, *_ = make_batch(
        sampler, config, 3, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    )
    assert torch.equal(clean, sampler.sample(3, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(noisy, gaussian_blur(clean, 2.0))


@pytest.mark.parametrize("noise", ["gaussian", "uniform"])
def test_make_batch_draws_the_asked_noise_at_a_fixed_sigma(tmp_path, noise):
    data = _image_folder(tmp_path / "data")
    sampler = PatchSampler(data, patch_size=16, channels=1)
    config = _tiny_config(data, sigma_range=[25.0, 25.0], noise=noise)
    noisy, clean, *_ = make_batch(
        sampler, config, 64, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    )
    residual = noisy - clean
    # 16384 samples: the standard deviation is within 2% of 25/255 with high probability.
    assert float(residual.std()) == pytest.approx(25 / 255, rel=0.02)
    bound = float(residual.abs().max())
    if noise == "uniform":
        assert bound <= 25 / 255 * 3**0.5 + 1e-6
    else:
        assert bound > 25 / 255 * 3**0.5


def test_epochs_set_the_run_length_and_milestones():
    config = TrainConfig(
        epochs=70, epoch_patches=1000, batch_size=128, lr_milestones=[50 / 70, 60 / 70]
    )
    assert config.steps_per_epoch() == 8
    assert config.total_steps() == 547  # ceil(70 * 1000 / 128)
    assert learning_rate(config, 390) == pytest.approx(1e-3)
    assert learning_rate(config, 391) == pytest.approx(5e-4)  # epoch 50 = step 390.7


def test_plateau_schedule_and_keep_best(tmp_path):
    data = _image_folder(tmp_path / "data")
    config = _tiny_config(
        data, steps=8, val_every=2, lr_schedule="plateau", lr_gamma=0.25, keep_best=True
    )
    assert learning_rate(config, 3, plateau_scale=0.25) == pytest.approx(2.5e-4)
    result = train(config, tmp_path / "run", progress=False)
    card = load_checkpoint(tmp_path / "run" / "model.safetensors").card
    assert card["training"]["weights_kept"] == "best validation"
    assert card["training"]["best_step"] == result["best"]["step"]
    log = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    validations = [r for r in log if r["val_psnr_25"]]
    assert len(validations) == 4
    # The learning rate falls by lr_gamma after each validation that scored lower.
    expected = 1e-3
    for before, after in zip(validations[:-1], validations[1:], strict=True):
        if float(after["val_psnr_25"]) < float(before["val_psnr_25"]):
            expected *= 0.25
    assert float(validations[-1]["lr"]) in (pytest.approx(expected), pytest.approx(expected * 4))
    best_scores = [float(r["val_psnr_25"]) for r in validations]
    assert card["metrics"]["best_validation_mean_psnr"] == pytest.approx(max(best_scores))


def test_resolved_recipe_reruns_the_same_configuration(tmp_path):
    data = _image_folder(tmp_path / "data")
    config = _tiny_config(data, steps=2, sigma_range=[5.0, 15.0])
    train(config, tmp_path / "run", progress=False)
    assert load_recipe(tmp_path / "run" / "recipe.toml") == config


def test_cli_overrides_and_resume_without_recipe(tmp_path, capsys):
    from filterscope.cli.main import main

    data = _image_folder(tmp_path / "data")
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'arch = "dncnn"\narch_options = {{num_layers = 3, hidden = 4}}\ndata_dir = "{data}"\n'
        f'val_dir = "{data}"\nval_images = 1\npatch_size = 16\nbatch_size = 2\nsteps = 2\n'
        "tensorboard = false\n"
    )
    run = tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--out", str(run), "--no-progress"]
    assert main(args + ["--sigma-range", "0", "10", "--set", "val_sigmas=[10.0]"]) == 0
    saved = load_recipe(run / "recipe.toml")
    assert saved.sigma_range == [0.0, 10.0] and saved.val_sigmas == [10.0]
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert load_checkpoint(run / "model.safetensors").card["training"]["steps"] == 3
    capsys.readouterr()
    assert main(args + ["--set", "steps=many"]) == 2
    assert "steps" in capsys.readouterr().err
    assert main(args + ["--set", "nonsense"]) == 2


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    data = _image_folder(tmp_path / "data")
    config = _tiny_config(data, steps=2)
    train(config, tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["generators"] = state["generators"] * 2
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="2 processes"):
        train(_tiny_config(data, steps=4), tmp_path / "run", resume=True, progress=False)


def test_resume_of_a_train_gpu_checkpoint_is_refused_by_name(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=2), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["generators"] = [{"device": state["generators"][0]["patch"]}]  # train-gpu's layout
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="train-gpu"):
        train(_tiny_config(data, steps=4), tmp_path / "run", resume=True, progress=False)


def test_prefetching_does_not_change_the_batches(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, prefetch_batches=0), tmp_path / "plain", progress=False)
    train(_tiny_config(data, prefetch_batches=3), tmp_path / "ahead", progress=False)
    plain = load_checkpoint(tmp_path / "plain" / "model.safetensors").state_dict()
    ahead = load_checkpoint(tmp_path / "ahead" / "model.safetensors").state_dict()
    for key in plain:
        assert torch.equal(plain[key], ahead[key]), key


def test_prefetcher_hands_on_errors_of_the_batch_maker():
    from filterscope.training.prefetch import BatchPrefetcher

    def broken():
        raise InputError("unreadable image")

    with BatchPrefetcher(broken, {}, depth=2) as prefetcher:
        with pytest.raises(InputError, match="unreadable"):
            prefetcher.next()


def test_prefetcher_makes_batches_on_one_thread_and_leaves_the_callers_count():
    import threading

    from filterscope.training.prefetch import BatchPrefetcher

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with BatchPrefetcher(lambda: (torch.tensor(torch.get_num_threads()),), {}) as prefetcher:
            (threads_in_maker,), _ = prefetcher.next()
            assert torch.get_num_threads() == 2
        assert int(threads_in_maker) == 1
        # A thread started after the prefetcher closed gets the caller's count back.
        seen = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(before)


def test_bfloat16_autocast_training_keeps_float32_weights(tmp_path):
    data = _image_folder(tmp_path / "data")
    result = train(_tiny_config(data, precision="bfloat16"), tmp_path / "run", progress=False)
    assert np.isfinite(result["loss"])
    state = load_checkpoint(tmp_path / "run" / "model.safetensors").state_dict()
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    with pytest.raises(InputError, match="precision"):
        _tiny_config(data, precision="float16").validate()


def test_sigma_power_moves_the_draw_toward_low_noise():
    from filterscope.noise import sample_sigmas

    uniform = sample_sigmas(20000, (0.0, 1.0), generator=torch.Generator().manual_seed(0))
    squared = sample_sigmas(
        20000, (0.0, 1.0), generator=torch.Generator().manual_seed(0), power=2.0
    )
    # Same uniform draw u, so u^2 = the uniform draw squared, sample by sample.
    torch.testing.assert_close(squared, uniform**2)
    # P(sigma < 0.05) is 0.05 uniform and sqrt(0.05) = 0.224 for power 2 (+-0.01: 20000 draws).
    assert float((squared < 0.05).float().mean()) == pytest.approx(0.05**0.5, abs=0.01)
    with pytest.raises(ValueError, match="power"):
        sample_sigmas(4, (0.0, 1.0), power=0.0)


def test_init_from_starts_the_run_from_a_trained_model(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "first", progress=False)
    first = tmp_path / "first" / "model.safetensors"
    config = _tiny_config(data, steps=1, lr=1e-12, warmup_steps=0, init_from=str(first))
    train(config, tmp_path / "second", progress=False)
    before = dict(load_checkpoint(first).named_parameters())
    after = dict(load_checkpoint(tmp_path / "second" / "model.safetensors").named_parameters())
    for key in before:  # one step at lr 1e-12 leaves the weights where init_from put them
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-8)
    fresh = dict(load_checkpoint(tmp_path / "first" / "model.safetensors").named_parameters())
    config = _tiny_config(data, steps=1, lr=1e-12, warmup_steps=0, seed=99)
    train(config, tmp_path / "random", progress=False)
    random = dict(load_checkpoint(tmp_path / "random" / "model.safetensors").named_parameters())
    assert any(not torch.allclose(random[k], fresh[k]) for k in fresh)  # the check can fail


def test_init_from_another_architecture_is_refused_by_name(tmp_path):
    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "first", progress=False)
    other = _tiny_config(
        data,
        arch_options={"num_layers": 4, "hidden": 4},
        init_from=str(tmp_path / "first" / "model.safetensors"),
    )
    with pytest.raises(CheckpointError, match="init_from"):
        train(other, tmp_path / "second", progress=False)
    assert not (tmp_path / "second" / "checkpoint.pt").exists()


def test_init_sha256_pins_the_weights_a_run_starts_from(tmp_path):
    import hashlib

    data = _image_folder(tmp_path / "data")
    train(_tiny_config(data, steps=3), tmp_path / "first", progress=False)
    first = tmp_path / "first" / "model.safetensors"
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    pinned = _tiny_config(data, steps=1, init_from=str(first), init_sha256=digest)
    train(pinned, tmp_path / "pinned", progress=False)
    assert (tmp_path / "pinned" / "model.safetensors").exists()
    # Another file under the same name (the start retrained) is refused, naming both.
    other = _tiny_config(data, steps=1, init_from=str(first), init_sha256="0" * 64)
    with pytest.raises(CheckpointError, match=f"init_from: .*{digest[:12]}.*0{{12}}"):
        train(other, tmp_path / "other", progress=False)
    assert not (tmp_path / "other" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"init_from": "x", "init_sha256": "abc"}, "64 lowercase hex"),
        ({"init_from": "x", "init_sha256": "A" * 64}, "64 lowercase hex"),
        ({"init_sha256": "0" * 64}, "init_from, which is not set"),
    ],
)
def test_a_malformed_or_orphan_init_sha256_is_refused(fields, message):
    with pytest.raises(InputError, match=f"init_sha256: .*{message}"):
        TrainConfig(**fields).validate()


def test_recipe_refuses_a_non_positive_sigma_power(tmp_path):
    with pytest.raises(InputError, match="sigma_power"):
        TrainConfig(sigma_power=0.0).validate()


def test_color_augmentation_reorders_channels_and_scales_saturation():
    from filterscope.training.data import augment_color

    patches = 0.25 + 0.5 * torch.rand(64, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    same = augment_color(
        patches, saturation_range=(1.0, 1.0), channel_shuffle=False, generator=torch.Generator()
    )
    assert same is patches
    shuffled = augment_color(
        patches,
        saturation_range=(1.0, 1.0),
        channel_shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    # Each pixel keeps its three values, in another order; 64 patches draw more than one order.
    torch.testing.assert_close(shuffled.sort(dim=1).values, patches.sort(dim=1).values)
    orders = {
        tuple(int((patch == out[c]).all(-1).all(-1).nonzero()) for c in range(3))
        for patch, out in zip(patches, shuffled, strict=True)
    }
    assert len(orders) == 6  # 64 patches draw all 6 orders (chance of missing one < 1e-4)
    # A fixed factor 0.5 halves each pixel's distance from its gray; values in [0.25, 0.75]
    # stay inside [0, 1], so no clipping: exact to float32 rounding (1e-6).
    halved = augment_color(
        patches, saturation_range=(0.5, 0.5), channel_shuffle=False, generator=torch.Generator()
    )
    gray = patches.mean(dim=1, keepdim=True)
    torch.testing.assert_close(halved, gray + 0.5 * (patches - gray), rtol=0, atol=1e-6)
    tripled = augment_color(
        patches, saturation_range=(3.0, 3.0), channel_shuffle=False, generator=torch.Generator()
    )
    assert float(tripled.min()) == 0.0 and float(tripled.max()) == 1.0  # clipped to [0, 1]


def test_color_augmentation_is_drawn_in_the_training_batches(tmp_path):
    data = _image_folder(tmp_path / "rgb", count=2, size=(33, 29), channels=3)
    plain = _tiny_config(data, in_channels=3, sigma_range=[0.0, 0.0])
    shuffled = _tiny_config(data, in_channels=3, sigma_range=[0.0, 0.0], channel_shuffle=True)
    sampler = PatchSampler(data, patch_size=16, channels=3)

    def clean(config):
        generators = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
        return make_batch(sampler, config, 8, *generators)[1]

    before, after = clean(plain), clean(shuffled)
    torch.testing.assert_close(after.sort(dim=1).values, before.sort(dim=1).values)
    assert not torch.equal(after, before)
    torch.testing.assert_close(clean(shuffled), after)  # reproducible from the generators


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"channel_shuffle": True}, "in_channels = 3"),
        ({"saturation_range": [0.5, 2.0]}, "in_channels = 3"),
        ({"in_channels": 3, "saturation_range": [0.0, 2.0]}, "saturation_range"),
        ({"in_channels": 3, "saturation_range": [2.0, 1.0]}, "saturation_range"),
        ({"in_channels": 3, "saturation_range": [1.0]}, "saturation_range"),
    ],
)
def test_color_augmentation_refuses_gray_models_and_bad_ranges(changes, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**changes).validate()


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.toml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[path.name for path in RECIPES])
def test_every_shipped_recipe_is_valid(recipe):
    # A recipe is run hours after it is written: a bad key or range must show here.
    config = load_recipe(recipe)
    assert config.steps > 0 and config.data_dir.startswith("../shared/data/")


def test_recipes_that_start_from_a_shipped_model_pin_its_weights():
    # A recipe that fine-tunes a shipped model by name reproduces only from the weights it
    # was run from: retraining that model must either keep the old file's recipe working
    # (init_sha256 refuses the new weights) or be a deliberate edit of this pin.
    import hashlib

    from filterscope.models.zoo import list_shipped, model_file

    by_name = [load_recipe(path) for path in RECIPES]
    by_name = [config for config in by_name if config.init_from in list_shipped()]
    assert by_name, "no recipe starts from a shipped model: drop this test"
    for config in by_name:
        digest = hashlib.sha256(model_file(config.init_from).read_bytes()).hexdigest()
        assert config.init_sha256 == digest, config.init_from


# ------------------------------------------------------------- noise models (issue 33)

MIXTURE = ["gaussian", "camera", "poisson-gaussian", "correlated"]


def _color_config(data: Path, **changes) -> TrainConfig:
    return _tiny_config(data, in_channels=3, **changes)


def test_gaussian_recipes_keep_the_noise_stream_of_earlier_versions(tmp_path):
    # A run started before the other noise models must resume to the same batches.
    from filterscope.noise import gaussian_noise, sample_sigmas

    data = _image_folder(tmp_path / "data")
    sampler = PatchSampler(data, patch_size=16, channels=1)
    config = _tiny_config(data, sigma_range=[5.0, 50.0], sigma_known_fraction=0.5)
    noisy, clean, given, _ = make_batch(
        sampler, config, 6, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    )
    generator = torch.Generator().manual_seed(1)
    sigmas = sample_sigmas(6, (5 / 255, 50 / 255), generator=generator)
    torch.testing.assert_close(
        noisy, clean + gaussian_noise(clean.shape, sigmas, generator=generator)
    )
    known = torch.rand(6, generator=generator) < 0.5
    torch.testing.assert_close(given, torch.where(known, sigmas.reshape(-1), 0.0))


def test_make_batch_tells_signal_dependent_noise_as_a_std_map(tmp_path):
    data = _image_folder(tmp_path / "data", channels=3)
    sampler = PatchSampler(data, patch_size=16, channels=3)
    config = _color_config(
        data, noise=MIXTURE, noise_weights=[0.4, 0.3, 0.2, 0.1], sigma_known_fraction=0.5
    )
    generators = (torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    noisy, clean, given, noise_std = make_batch(sampler, config, 24, *generators)
    assert noisy.shape == clean.shape == given.shape == noise_std.shape == (24, 3, 16, 16)
    told = given.flatten(1).amax(dim=1) > 0
    assert 0 < int(told.sum()) < 24
    torch.testing.assert_close(given[told], noise_std[told])
    assert not given[~told].any()
    assert float(noise_std.min()) > 0
    # Only kinds with one std per patch: one σ per patch, as for Gaussian noise.
    flat = _color_config(data, noise=["gaussian", "correlated"], sigma_known_fraction=1.0)
    _, _, given, noise_std = make_batch(
        sampler, flat, 8, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    )
    assert given.shape == (8,) and noise_std.shape == (8, 1, 1, 1)


def test_resume_is_exact_with_a_mixture_of_noise_models(tmp_path):
    data = _image_folder(tmp_path / "data", channels=3)
    config = _color_config(
        data, noise=MIXTURE, noise_weights=[1.0, 1.0, 1.0, 1.0], sigma_known_fraction=0.5
    )
    straight, resumed = _straight_and_resumed(config, tmp_path, kill_after=4)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed[key]), key
    assert straight.card["training"]["noise"] == MIXTURE
    assert load_recipe(tmp_path / "straight" / "recipe.toml") == config


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('noise = "poisson"', "noise"),
        ('noise = ["camera", "camera"]', "noise"),
        ('noise = ["camera", 3]', "noise"),
        ('noise = ["camera", "gaussian"]\nnoise_weights = [1.0]', "noise_weights"),
        ('noise = ["camera", "gaussian"]\nnoise_weights = [-1.0, 2.0]', "noise_weights"),
        ('noise = "camera"\nnoise_options = {shot = 1.0}', "noise_options"),
        ('noise = "camera"\nnoise_options = {jpeg_probability = 2.0}', "jpeg_probability"),
    ],
)
def test_recipe_refuses_bad_noise_settings_by_name(tmp_path, text, key):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text + "\n")
    with pytest.raises(InputError, match=key):
        load_recipe(recipe)


def test_recipe_reads_a_noise_mixture_and_its_options(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'noise = ["gaussian", "camera"]\nnoise_weights = [3, 1]\n'
        "noise_options = {shot_range = [1e-3, 1e-2], jpeg_probability = 0.0}\n"
    )
    config = load_recipe(recipe)
    assert config.noise_kinds() == ["gaussian", "camera"]
    assert config.noise_weights == [3.0, 1.0]
    assert config.noise_model_options().shot_range == (1e-3, 1e-2)
    assert config.noise_model_options().jpeg_probability == 0.0


def _pairs_folder(folder: Path, channels: int = 3) -> Path:
    """Real-noise pairs whose noisy half is the clean half inverted (so alignment shows)."""
    from PIL import Image

    make_image_folder(folder / "clean", channels=channels, size=(37, 31))
    (folder / "noisy").mkdir()
    for path in sorted((folder / "clean").iterdir()):
        inverted = 255 - np.asarray(Image.open(path))
        Image.fromarray(inverted).save(folder / "noisy" / path.name)
    return folder


def test_make_batch_puts_aligned_real_pairs_last_blind_with_unknown_std(tmp_path):
    from filterscope.training.data import PairedPatchSampler

    data = _image_folder(tmp_path / "data", channels=3)
    pairs = PairedPatchSampler(
        _pairs_folder(tmp_path / "pairs"), patch_size=16, channels=3, cache_mb=8
    )
    sampler = PatchSampler(data, patch_size=16, channels=3)
    config = _color_config(
        data, noise=MIXTURE, sigma_known_fraction=1.0, pairs_dir="x", pairs_per_batch=2
    )
    plain = make_batch(
        sampler, config, 6, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    )
    noisy, clean, given, noise_std = make_batch(
        sampler, config, 6, *(torch.Generator().manual_seed(s) for s in (0, 1)), pairs
    )
    torch.testing.assert_close(noisy[-2:], 1 - clean[-2:], atol=1e-6, rtol=0)
    assert not given[-2:].any() and bool(noise_std[-2:].isnan().all())
    for mine, before in zip((noisy, clean, given, noise_std), plain, strict=True):
        torch.testing.assert_close(mine[:-2], before[:-2])  # the other patches as before
    assert bool(given[:-2].flatten(1).amax(dim=1).gt(0).all())  # all told, as asked


def test_make_batch_tells_real_pairs_their_measured_std_map_when_asked(tmp_path):
    from filterscope.training.data import PairedPatchSampler, measured_noise_std

    data = _image_folder(tmp_path / "data", channels=3)
    pairs = PairedPatchSampler(
        _pairs_folder(tmp_path / "pairs"), patch_size=16, channels=3, cache_mb=8
    )
    sampler = PatchSampler(data, patch_size=16, channels=3)
    common = dict(noise=MIXTURE, pairs_dir="x", pairs_per_batch=2)
    unknown = _color_config(data, sigma_known_fraction=1.0, **common)
    measured = _color_config(data, sigma_known_fraction=1.0, pairs_std_window=3.0, **common)

    def batch(config):
        seeds = (torch.Generator().manual_seed(s) for s in (0, 1))
        return make_batch(sampler, config, 6, *seeds, pairs)

    before, after = batch(unknown), batch(measured)
    noisy, clean, given, noise_std = after
    expected = measured_noise_std(noisy[-2:], clean[-2:], 3.0)
    torch.testing.assert_close(noise_std[-2:], expected)
    torch.testing.assert_close(given[-2:], expected)  # every patch told (fraction 1)
    for mine, old in zip(after, before, strict=True):  # the same draws, the rest unchanged
        torch.testing.assert_close(mine[:-2], old[:-2])
    blind = _color_config(data, sigma_known_fraction=0.0, pairs_std_window=3.0, **common)
    _, _, given, noise_std = batch(blind)
    assert not given.any() and bool(noise_std[-2:].isfinite().all())  # a target, not told
    with pytest.raises(InputError, match="pairs_std_window: must be in"):
        _tiny_config(tmp_path, pairs_std_window=-1.0).validate()


def test_measured_noise_std_reads_a_known_level_and_is_homogeneous():
    from filterscope.training.data import measured_noise_std

    generator = torch.Generator().manual_seed(7)
    clean = torch.rand(2, 3, 37, 31, generator=generator)
    level = torch.tensor([0.02, 0.08]).view(2, 1, 1, 1)
    noisy = clean + level * torch.randn(clean.shape, generator=generator)
    std = measured_noise_std(noisy, clean, 4.0)
    assert std.shape == clean.shape
    # About 200 pixels per window: each pixel's estimate within 25% of the level, the
    # image's median within 5%.
    ratio = std / level
    assert float(ratio.amin()) > 0.75 and float(ratio.amax()) < 1.25
    assert abs(float(ratio.median()) - 1) < 0.05
    torch.testing.assert_close(measured_noise_std(3 * noisy, 3 * clean, 4.0), 3 * std)
    with pytest.raises(ValueError, match="window: must be positive"):
        measured_noise_std(noisy, clean, 0.0)
    # Coarse grain: white noise of std 0.02 repeated over 2x2 blocks has a per-pixel std
    # of 0.02 and a white-noise level of 0.04 at block 2; white noise reads about the
    # same at every block size (the largest of three estimates: a little above).
    grain = 0.02 * torch.randn(2, 3, 19, 16, generator=generator)
    coarse = F.interpolate(grain, scale_factor=2, mode="nearest")[..., :37, :31]
    zeros = torch.zeros_like(coarse)
    per_pixel = measured_noise_std(coarse, zeros, 4.0)
    blocks = measured_noise_std(coarse, zeros, 4.0, block=4)
    assert abs(float(per_pixel.median()) / 0.02 - 1) < 0.1
    assert abs(float(blocks.median()) / 0.04 - 1) < 0.15
    white = measured_noise_std(noisy, clean, 4.0, block=4)
    assert 1.0 <= float((white / level).median()) < 1.15
    with pytest.raises(ValueError, match="block: must be a power of 2"):
        measured_noise_std(noisy, clean, 4.0, block=3)


def test_pair_augmentation_zooms_both_halves_alike_and_scales_the_noise():
    from filterscope.training.data import augment_pairs

    generator = torch.Generator().manual_seed(3)
    clean = 0.3 + 0.4 * torch.rand(16, 3, 31, 31, generator=generator)
    noise = 0.05 * torch.randn(16, 3, 31, 31, generator=generator)
    noisy = clean + noise

    def run(zoom, gain, seed=0):
        return augment_pairs(
            noisy,
            clean,
            zoom_range=zoom,
            gain_range=gain,
            generator=torch.Generator().manual_seed(seed),
        )

    same = run((1.0, 1.0), (1.0, 1.0))
    assert same[0] is noisy and same[1] is clean
    # Bilinear up-scaling is linear: the zoomed noisy patch is the zoomed clean one plus
    # the zoomed noise (float32 rounding, 1e-6), and the grain grows: the lag-1
    # correlation of white noise (about 0) rises above 0.5 at zoom 2 to 3.
    zoomed_noisy, zoomed_clean = run((2.0, 3.0), (1.0, 1.0))
    zoomed_noise, _ = augment_pairs(
        noise,
        torch.zeros_like(noise),
        zoom_range=(2.0, 3.0),
        gain_range=(1.0, 1.0),
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(zoomed_noisy - zoomed_clean, zoomed_noise, rtol=0, atol=1e-6)

    def lag_one(r):
        return float((r[..., 1:] * r[..., :-1]).mean() / r.pow(2).mean())

    assert abs(lag_one(noise)) < 0.05 and lag_one(zoomed_noise) > 0.5
    # A fixed gain 2 doubles the noise about the clean patch; values stay inside [0, 1]
    # (0.3..0.7 ± 0.25 at 5 std is rare but clipped: compare where not clipped).
    doubled, kept_clean = run((1.0, 1.0), (2.0, 2.0))
    assert kept_clean is clean
    inside = (clean + 2 * noise).gt(0) & (clean + 2 * noise).lt(1)
    torch.testing.assert_close(doubled[inside], (clean + 2 * noise)[inside], rtol=0, atol=1e-6)
    assert float(doubled.min()) >= 0.0 and float(doubled.max()) <= 1.0


def test_real_pairs_come_from_several_folders_as_one_set(tmp_path):
    from filterscope.training.config import config_from_dict
    from filterscope.training.data import PairedPatchSampler

    first, second = _pairs_folder(tmp_path / "a"), _pairs_folder(tmp_path / "b")
    for path in sorted((second / "noisy").iterdir()):  # names must differ between folders
        path.rename(second / "noisy" / f"b-{path.name}")
        (second / "clean" / path.name).rename(second / "clean" / f"b-{path.name}")
    both = PairedPatchSampler([first, second], patch_size=16, channels=3, cache_mb=8)
    alone = PairedPatchSampler(first, patch_size=16, channels=3, cache_mb=8)
    assert len(both) == 2 * len(alone)
    noisy, clean = both.sample(64, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy, 1 - clean, atol=1e-6, rtol=0)  # still aligned
    config = config_from_dict({"pairs_dir": [str(first), str(second)], "pairs_per_batch": 1})
    assert config.pair_folders() == [str(first), str(second)]
    with pytest.raises(InputError, match="pairs_dir must be a str"):
        config_from_dict({"pairs_dir": [1, 2]})
    (second / "clean").rename(tmp_path / "elsewhere")
    with pytest.raises(InputError, match=f"pairs_dir: {second} has no clean/ folder"):
        PairedPatchSampler([first, second], patch_size=16, channels=3, cache_mb=8)


def test_real_pairs_are_refused_when_they_do_not_pair(tmp_path):
    from filterscope.training.data import PairedPatchSampler

    folder = _pairs_folder(tmp_path / "pairs")
    (folder / "noisy" / "img0.png").rename(folder / "noisy" / "other.png")
    with pytest.raises(InputError, match="pairs_dir: .*different file names"):
        PairedPatchSampler(folder, patch_size=16, channels=3, cache_mb=8)
    with pytest.raises(InputError, match="pairs_dir: .* has no noisy/ folder"):
        PairedPatchSampler(tmp_path, patch_size=16, channels=3, cache_mb=8)
    with pytest.raises(InputError, match="pairs_per_batch: must be in"):
        _tiny_config(tmp_path, pairs_dir=str(folder), pairs_per_batch=5).validate()
    with pytest.raises(InputError, match="pairs_dir: needed"):
        _tiny_config(tmp_path, pairs_per_batch=1).validate()
    with pytest.raises(InputError, match="pairs_zoom_range: need 1 <= lo"):
        _tiny_config(tmp_path, pairs_zoom_range=[0.5, 2.0]).validate()
    with pytest.raises(InputError, match="pairs_gain_range: need 0 < lo"):
        _tiny_config(tmp_path, pairs_gain_range=[0.0, 2.0]).validate()


def test_training_with_real_pairs_resumes_exactly_and_names_them(tmp_path):
    data = _image_folder(tmp_path / "data", channels=3)
    pairs = _pairs_folder(tmp_path / "pairs")
    config = _color_config(
        data,
        steps=5,
        pairs_dir=str(pairs),
        pairs_per_batch=1,
        pairs_zoom_range=[1.0, 2.0],
        pairs_gain_range=[0.5, 2.0],
    )
    straight, resumed = _straight_and_resumed(config, tmp_path, kill_after=3)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed[key]), key
    card = json.loads((tmp_path / "straight" / "model.json").read_text())
    assert card["training"]["real_pairs"] == f"{pairs}, 1 of 4 patches"


def test_moving_average_of_the_weights_is_validated_saved_and_resumed_exactly(tmp_path):
    data = _image_folder(tmp_path / "data")
    config = _tiny_config(data, ema_decay=0.9)
    straight, resumed = _straight_and_resumed(config, tmp_path, kill_after=3)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed[key]), key
    checkpoint = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    saved = straight.state_dict()
    for key, value in checkpoint["ema"].items():
        assert torch.equal(saved[key], value), key  # the average is what was saved
    last = checkpoint["state_dict"]
    assert any(not torch.equal(saved[k], last[k]) for k in last)  # and it is not the last
    card = json.loads((tmp_path / "straight" / "model.json").read_text())
    assert "moving average" in card["training"]["weights_kept"]
    plain = _tiny_config(data)
    train(plain, tmp_path / "plain", progress=False)
    with pytest.raises(CheckpointError, match="holds no moving average"):
        train(config, tmp_path / "plain", resume=True, progress=False)
    with pytest.raises(InputError, match=r"ema_decay: must be in \[0, 1\)"):
        _tiny_config(data, ema_decay=1.0).validate()


def test_moving_average_update_warms_up_then_follows_the_decay():
    from filterscope.training.trainer import update_average

    average = {"w": torch.zeros(3), "count": torch.tensor(1)}
    current = {"w": torch.ones(3), "count": torch.tensor(5)}
    update_average(average, current, 0.99, step=0)  # weight 1 - 1/10
    torch.testing.assert_close(average["w"], torch.full((3,), 0.9))
    assert int(average["count"]) == 5  # counters copied, not averaged
    average["w"].zero_()
    update_average(average, current, 0.5, step=1000)  # the decay itself
    torch.testing.assert_close(average["w"], torch.full((3,), 0.5))


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_the_step_minimises_the_recipes_loss(loss):
    from filterscope.models import create_model
    from filterscope.training.trainer import optimizer_step

    torch.manual_seed(0)
    model = create_model("dncnn", bias=False, num_layers=3, hidden=4)
    clean = torch.rand(2, 1, 37, 31)
    noisy = clean + 0.1 * torch.randn_like(clean)
    with torch.no_grad():
        error = model(noisy) - clean
    expected = error.abs().mean() if loss == "l1" else error.square().mean()
    sgd = torch.optim.SGD(model.parameters(), lr=1e-4)
    returned = optimizer_step(model, sgd, noisy, clean, loss=loss)
    torch.testing.assert_close(returned, expected, rtol=1e-5, atol=0)
    with torch.no_grad():
        after = model(noisy) - clean
    assert (after.abs().mean() if loss == "l1" else after.square().mean()) < expected


def test_an_unknown_loss_is_refused(tmp_path):
    data = make_image_folder(tmp_path / "data")
    with pytest.raises(InputError, match="loss: must be one of mse, l1, got 'l2'"):
        _tiny_config(data, loss="l2").validate()
