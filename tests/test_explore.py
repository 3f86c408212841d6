"""`filterscope explore`: the API answers what the library computes, and refuses bad requests."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # newer Starlette asks for httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from filterscope.analysis import (
    adaptive_filters,
    first_order_decomposition,
    patch_spectrum,
    patch_spectrum_in_image,
)
from filterscope.explore import Explorer, load_model
from filterscope.explore.server import create_app
from filterscope.explore.session import decode_filter
from filterscope.noise import add_noise
from filterscope.ntk.denoiser import filter_basis

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HEIGHT, WIDTH = 31, 37
SIGMA = 25.0
SEED = 3


def clean_image() -> torch.Tensor:
    """A smooth 37x31 gray image with an edge, (1, 1, H, W) in [0, 1]."""
    rows = torch.linspace(0, 1, HEIGHT)[:, None]
    cols = torch.linspace(0, 1, WIDTH)[None, :]
    image = 0.3 + 0.3 * rows * cols + 0.3 * (cols > 0.5)
    return image[None, None].float()


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def models():
    return [load_model(name, 1) for name in ("bf-dncnn-gray", "dncnn-gray", "ntk")]


@pytest.fixture()
def explorer(models):
    return Explorer(clean_image(), models, sigma=SIGMA / 255.0, seed=SEED)


@pytest.fixture()
def client(explorer):
    with TestClient(
        create_app(explorer, warm_up=False), raise_server_exceptions=False
    ) as test_client:
        yield test_client


def noisy(sigma_255: float = SIGMA) -> torch.Tensor:
    """The noisy image as `analyze filters` makes it (float64 image, seeded noise)."""
    return add_noise(clean_image().double(), sigma_255 / 255.0, generator=SEED)


def test_models_listed_in_order(client):
    answer = client.get("/api/models").json()["models"]
    assert [m["name"] for m in answer] == ["bf-dncnn-gray", "dncnn-gray", "ntk"]
    assert [m["kind"] for m in answer] == ["jacobian", "jacobian", "nonlocal"]
    assert [m["has_bias"] for m in answer] == [False, True, False]


@pytest.mark.parametrize("sigma", [None, 50.0])
def test_filter_equals_library_call(client, models, sigma):
    x, y = 5, 29  # near a corner: the crop is clipped by the image
    params = {"model": "bf-dncnn-gray", "x": x, "y": y}
    if sigma is not None:
        params["sigma"] = sigma
    answer = client.get("/api/filter", params=params).json()
    (expected,) = adaptive_filters(models[0].denoiser, noisy(sigma or SIGMA), [(x, y)])
    t, b, left, right = expected.row.box
    assert answer["window_share"] >= 0.99 and answer["window_radius"] == answer["window_99"]
    assert answer["pixel"] == [x, y] and answer["model"] == "bf-dncnn-gray"
    assert answer["sigma"] == pytest.approx(sigma or SIGMA)
    # The 99% window, or the whole receptive field when asked with radius.
    params["radius"] = 100
    answer = client.get("/api/filter", params=params).json()
    assert answer["origin"] == [left, t]
    assert answer["size"] == [right - left, b - t]
    np.testing.assert_allclose(decode_filter(answer), expected.row.weights[0], atol=1e-5)
    assert answer["sum"] == pytest.approx(expected.sum, abs=1e-5)
    assert answer["extent_99"] == expected.extent_99


def test_warm_up_fills_the_cache_at_start(explorer):
    import time

    centre = ("bf-dncnn-gray", WIDTH // 2, HEIGHT // 2)
    with TestClient(create_app(explorer)):
        deadline = time.monotonic() + 120
        while (
            explorer.filter(*centre, precision="fast", compute=False) is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    assert explorer.filter(*centre, precision="fast", compute=False) is not None


def test_filter_cached_and_pixel_order_is_column_row(client, explorer):
    first = client.get("/api/filter", params={"model": "dncnn-gray", "x": 30, "y": 2}).json()
    assert first["pixel"] == [30, 2]
    assert explorer.filter("dncnn-gray", 30, 2, compute=False) is not None
    again = client.get("/api/filter", params={"model": "dncnn-gray", "x": 30, "y": 2}).json()
    assert again == first
    other = client.get("/api/filter", params={"model": "dncnn-gray", "x": 2, "y": 30}).json()
    assert not np.array_equal(decode_filter(other), decode_filter(first))


def test_nonlocal_filter_is_a_row_of_the_ntk_filter(client):
    x, y = 20, 10
    answer = client.get("/api/filter", params={"model": "ntk", "x": x, "y": y}).json()
    basis = filter_basis(noisy()[0], method="ntk", sigma=SIGMA / 255.0, columns=None, seed=SEED)
    t = client.get("/api/output", params={"model": "ntk"}).json()["t"]
    row = basis.rows([(x, y)], t=t)[0]  # the twicing operator that made the image
    assert answer["t"] == pytest.approx(t)
    x0, y0 = answer["origin"]
    w, h = answer["size"]
    np.testing.assert_allclose(decode_filter(answer), row[y0 : y0 + h, x0 : x0 + w], atol=1e-5)
    assert answer["sum"] == pytest.approx(float(row.sum()), abs=1e-5)


def test_decomposition_and_images(client, models):
    answer = client.get("/api/decomposition", params={"model": "dncnn-gray"}).json()
    dec = first_order_decomposition(models[1].denoiser, noisy(), dtype=torch.float32)
    bias_rms = 255.0 * float(dec.bias.pow(2).mean().sqrt())
    assert answer["bias_norm"] == pytest.approx(bias_rms, rel=1e-4)
    free = client.get("/api/decomposition", params={"model": "bf-dncnn-gray"}).json()
    assert free["bias_norm"] < 1e-6 < answer["bias_norm"]
    from PIL import Image

    for kind, model in [("noisy", None), ("clean", None), ("denoised", "ntk"),
                        ("residual", "bf-dncnn-gray"), ("bias", "dncnn-gray"),
                        ("linear", "dncnn-gray"), ("eigen", "ntk")]:  # fmt: skip
        params = {} if model is None else {"model": model}
        response = client.get(f"/api/image/{kind}", params=params)
        assert response.status_code == 200, (kind, response.text)
        assert response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (WIDTH, HEIGHT)


def test_output_psnr_and_spectrum(client, models):
    output = client.get("/api/output", params={"model": "bf-dncnn-gray"}).json()
    assert output["psnr"] > output["noisy_psnr"]
    answer = client.get(
        "/api/spectrum", params={"model": "bf-dncnn-gray", "x": 36, "y": 0, "patch": 12}
    ).json()
    assert answer["origin"] == [WIDTH - 12, 0] and answer["patch"] == 12
    # The patch's block of the whole image's Jacobian, not the patch denoised alone.
    expected = patch_spectrum_in_image(models[0].denoiser, noisy(), (0, WIDTH - 12, 12, 12))
    np.testing.assert_allclose(answer["singular_values"], expected.singular_values, atol=1e-4)
    alone = patch_spectrum(models[0].denoiser, noisy()[:, :, 0:12, WIDTH - 12 :])
    assert abs(answer["effective_dim"] - alone.effective_dim) > 1e-3
    assert answer["effective_dim"] <= answer["patch_dim"] == 144
    assert answer["contraction"] == (answer["top_singular_value"] <= 1)
    assert len(answer["vectors"]) == 6 and np.array(answer["vectors"][0]).shape == (12, 12)


def test_page_is_served_without_any_file_access(client):
    page = client.get("/")
    assert page.status_code == 200 and "filterscope explore" in page.text
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    for path in ("/static/../server.py", "/../../etc/passwd", "/api/image/..%2f..%2fetc"):
        response = client.get(path)
        assert 400 <= response.status_code < 500 and "error" in response.json()


BAD_REQUESTS = [
    ("/api/filter", {"model": "bf-dncnn-gray", "x": WIDTH, "y": 0}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": -1, "y": 0}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": 0, "y": HEIGHT}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": "1e400", "y": 0}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": "ten", "y": 0}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": 1}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": 1, "y": 1, "sigma": "nan"}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": 1, "y": 1, "sigma": "-5"}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": 1, "y": 1, "sigma": "1e9"}),
    ("/api/filter", {"model": "bf-dncnn-gray", "x": 1, "y": 1, "channel": 1}),
    ("/api/filter", {"model": "../../weights/x.safetensors", "x": 1, "y": 1}),
    ("/api/filter", {"model": "/etc/passwd", "x": 1, "y": 1}),
    ("/api/filter", {"model": "dncnn-color", "x": 1, "y": 1}),
    ("/api/filter", {"model": "b" * 5000, "x": 1, "y": 1}),
    ("/api/spectrum", {"model": "ntk", "x": 1, "y": 1}),
    ("/api/spectrum", {"model": "bf-dncnn-gray", "x": 1, "y": 1, "patch": 400}),
    ("/api/decomposition", {"model": "ntk"}),
    ("/api/eigen", {"model": "dncnn-gray"}),
    ("/api/image/secret", {}),
    ("/api/image/denoised", {}),
    ("/api/image/eigen", {"model": "ntk", "index": 99}),
    ("/nowhere", {}),
]


def test_bad_requests_get_json_4xx_and_server_keeps_working(client):
    for path, params in BAD_REQUESTS:
        response = client.get(path, params=params)
        assert 400 <= response.status_code < 500, (path, params, response.text)
        assert "Traceback" not in response.text and response.json()["error"]
    assert client.post("/api/filter").status_code == 405
    ok = client.get("/api/filter", params={"model": "bf-dncnn-gray", "x": 1, "y": 1})
    assert ok.status_code == 200


def test_noisy_photo_has_a_fixed_sigma(models):
    explorer = Explorer(noisy().float(), models[:1])
    with TestClient(create_app(explorer, warm_up=False)) as client:
        assert client.get("/api/state").json()["sigma_adjustable"] is False
        refused = client.get("/api/filter", params={"model": "bf-dncnn-gray", "x": 1, "y": 1,
                                                    "sigma": 10})  # fmt: skip
        assert refused.status_code == 400 and "sigma" in refused.json()["error"]
        assert client.get("/api/image/clean").status_code == 400


def test_uploads_are_bounded_and_validated(explorer):
    app = create_app(explorer, max_upload_bytes=20_000, max_upload_pixels=64 * 64, warm_up=False)
    with TestClient(app) as client:
        too_many_bytes = client.post("/api/upload", content=b"\0" * 20_001)
        assert too_many_bytes.status_code == 413
        # A few hundred bytes that would decode to 100x100 pixels: refused from the header.
        too_many_pixels = client.post("/api/upload", content=png(np.zeros((100, 100), np.uint8)))
        assert too_many_pixels.status_code == 413
        assert client.post("/api/upload", content=b"not an image").status_code == 400
        assert client.post("/api/upload", content=b"").status_code == 400
        alpha = png(np.zeros((20, 20, 4), np.uint8))  # read_image refuses alpha, as denoise does
        refused = client.post("/api/upload", content=alpha)
        assert refused.status_code == 400 and "alpha" in refused.json()["error"]
        colour = png(np.zeros((20, 20, 3), np.uint8))  # the gray models cannot take it
        assert client.post("/api/upload", content=colour).status_code == 400
        image = (np.arange(40 * 30) % 251).astype(np.uint8).reshape(30, 40)
        state = client.post("/api/upload", content=png(image)).json()
        assert (state["width"], state["height"], state["sigma_adjustable"]) == (40, 30, False)
        answer = client.get("/api/filter", params={"model": "bf-dncnn-gray", "x": 39, "y": 29})
        assert answer.status_code == 200


def test_cli_explains_how_to_install_the_extra(monkeypatch, capsys, tmp_path):
    import importlib.util

    from filterscope.cli.main import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name)
    )
    assert main(["explore", str(tmp_path / "x.png"), "--no-browser"]) == 2
    assert "pip install 'filterscope[explore]'" in capsys.readouterr().err


def test_cli_checks_its_image_options(tmp_path, capsys):
    from filterscope.cli.main import main

    path = tmp_path / "clean.png"
    path.write_bytes(png(np.zeros((20, 20), np.uint8)))
    assert main(["explore", "--clean", str(path), "--no-browser"]) == 2
    assert "--clean and --sigma go together" in capsys.readouterr().err
    assert main(["explore", str(path), "--clean", str(path), "--sigma", "5"]) == 2
    assert main(["explore", str(path), "--model", "/no/such.safetensors"]) == 2


def test_colour_filter_per_output_channel():
    model = load_model("bf-dncnn-color", 3)
    clean = torch.rand(1, 3, 17, 19, generator=torch.Generator().manual_seed(0))
    explorer = Explorer(clean, [model], sigma=SIGMA / 255.0, seed=SEED)
    with TestClient(create_app(explorer, warm_up=False)) as client:
        params = {"model": "bf-dncnn-color", "x": 4, "y": 9, "channel": 2}
        answer = client.get("/api/filter", params=params).json()
        noisy3 = add_noise(clean.double(), SIGMA / 255.0, generator=SEED)
        (expected,) = adaptive_filters(model.denoiser, noisy3, [(4, 9)], channel=2)
        answer = client.get("/api/filter", params={**params, "radius": 50}).json()
        assert decode_filter(answer).shape == tuple(expected.row.weights.shape)
        np.testing.assert_allclose(decode_filter(answer), expected.row.weights, atol=1e-5)
        assert client.get("/api/image/residual", params={"model": "bf-dncnn-color"}).is_success


def test_device_runs_the_networks_there_and_gives_the_same_answers(models, explorer):
    """device="cpu" (what "auto" is on a machine without a GPU): the same filter,
    decomposition and spectrum as the networks where they are; no device, no explorer."""
    from filterscope.errors import InputError

    on_cpu = Explorer(clean_image(), models, sigma=SIGMA / 255.0, seed=SEED, device="cpu")
    a, b = explorer.filter("bf-dncnn-gray", 5, 7), on_cpu.filter("bf-dncnn-gray", 5, 7)
    assert np.array_equal(a["filter"], b["filter"]) and a["sum"] == b["sum"]
    for explorer_ in (explorer, on_cpu):
        assert explorer_.decomposition("dncnn-gray")["linear"].device.type == "cpu"
    spectrum = on_cpu.spectrum("bf-dncnn-gray", 5, 7, patch=8)
    assert (
        spectrum["singular_values"]
        == explorer.spectrum("bf-dncnn-gray", 5, 7, patch=8)["singular_values"]
    )
    with pytest.raises(InputError, match="nonsense"):
        Explorer(clean_image(), models, sigma=SIGMA / 255.0, device="nonsense")


# ----------------------------------------------------------------------------- issue 32


@pytest.mark.parametrize("text", ["５", "٣", "1_0", " 3", "3.0", "0x3"])
def test_pixel_parameters_take_ascii_digits_only(client, text):
    response = client.get("/api/filter", params={"model": "bf-dncnn-gray", "x": text, "y": 1})
    assert response.status_code == 400 and "integer" in response.json()["error"]


def test_a_model_with_a_long_path_is_explorable_by_its_id(tmp_path):
    import filterscope

    folder = tmp_path / ("a-rather-long-project-folder-name-" * 3)
    folder.mkdir()
    path = folder / "checkpoint.safetensors"
    net = filterscope.create_model("dncnn", bias=False, num_layers=4, hidden=8).eval()
    filterscope.save_model(net, path, card={"training": {"sigma_range_255": [0, 55]}})
    assert len(str(path)) > 64
    explorer = Explorer(clean_image(), [load_model(str(path), 1)], sigma=SIGMA / 255.0, seed=SEED)
    with TestClient(create_app(explorer, warm_up=False)) as client:
        (listed,) = client.get("/api/models").json()["models"]
        assert listed["name"] == str(path) and len(listed["id"]) <= 8
        for name in (listed["id"], listed["name"]):  # every name the server lists
            answer = client.get("/api/filter", params={"model": name, "x": 3, "y": 4})
            assert answer.status_code == 200, answer.text
            assert client.get("/api/output", params={"model": name}).status_code == 200
        refused = client.get("/api/filter", params={"model": "x" * 5_000, "x": 3, "y": 4})
        assert refused.status_code == 400


def test_card_output_is_the_denoised_pixel_for_the_default_model():
    """The shipped default (blind noise estimate): the exact row equals autograd on the
    whole image and the card's output is the denoised image's pixel."""
    import copy

    model = load_model("bf-drunet-gray", 1)
    explorer = Explorer(clean_image(), [model], sigma=SIGMA / 255.0, seed=SEED)
    noisy_ = explorer.noisy(explorer.sigma)
    net = copy.deepcopy(model.denoiser).double().eval()
    probe = noisy_.clone().requires_grad_(True)
    out = net(probe)
    x_hat = explorer.output(model.name)["x_hat"]
    for x, y in [(0, 0), (36, 30), (18, 15)]:
        answer = explorer.filter(model.name, x, y, radius=100)
        (grad,) = torch.autograd.grad(out[0, 0, y, x], probe, retain_graph=True)
        shown = torch.zeros(HEIGHT, WIDTH, dtype=torch.float64)
        x0, y0 = answer["origin"]
        w, h = answer["size"]
        shown[y0 : y0 + h, x0 : x0 + w] = torch.as_tensor(answer["filter"], dtype=torch.float64)
        for fx, fy, _, weight in answer["far"]:
            shown[fy, fx] += weight
        assert float((shown - grad[0, 0]).abs().max()) <= 1e-5
        assert answer["output_value"] == pytest.approx(float(x_hat[0, 0, y, x]), abs=1e-5)
        fast = explorer.filter(model.name, x, y, precision="fast")
        assert fast["output_value"] == pytest.approx(answer["output_value"], abs=1e-5)


def test_a_newer_pixel_stops_the_older_filter(explorer):
    """Cooperative cancellation: a filter whose should_stop turns True ends with
    Cancelled and caches nothing; the server answers such a request 409."""
    from filterscope.analysis.jacobian import Cancelled

    with pytest.raises(Cancelled):
        explorer.filter("bf-dncnn-gray", 9, 9, should_stop=lambda: True)
    assert explorer.filter("bf-dncnn-gray", 9, 9, compute=False) is None
    assert explorer.filter("bf-dncnn-gray", 9, 9)["pixel"] == [9, 9]


def test_filter_cache_is_bounded_in_bytes(models):
    from filterscope.explore import session

    explorer = Explorer(clean_image(), models[:1], sigma=SIGMA / 255.0, seed=SEED)
    explorer.caches["filter"].budget = 3 * 41 * 41 * 4 + 3 * 4096  # about three filters
    for x in range(8):
        explorer.filter("bf-dncnn-gray", x, 20)
    cache = explorer.caches["filter"]
    assert 1 <= len(cache) < 8 and cache.nbytes <= cache.budget
    assert cache.nbytes == sum(session.stored_nbytes(v) for v in cache._items.values())
    assert session.FILTER_BUDGET_BYTES == 256 << 20


def test_cache_accounting_is_the_memory_its_entries_hold(models):
    """What the filter cache counts is what its entries hold (tracemalloc of a copy:
    the accounting also counts the shared key strings and small ints, a few KB at
    most); a value it cannot measure is refused, one above the budget is not kept."""
    import copy
    import gc
    import tracemalloc

    from filterscope.explore import session

    explorer = Explorer(clean_image(), models, sigma=SIGMA / 255.0, seed=SEED)
    for name in ("bf-dncnn-gray", "ntk"):
        explorer.filter(name, 0, 30)
        explorer.filter(name, 20, 11, precision="fast")
    cache = explorer.caches["filter"]
    assert len(cache) == 4
    for entry in cache._items.values():
        accounted = session.stored_nbytes(entry)
        gc.collect()
        tracemalloc.start()
        try:
            duplicate = copy.deepcopy(entry)
            real = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert entry["weights"].nbytes < real <= accounted <= real + 4096
        del duplicate

    small = session.ByteLRUCache(budget=10_000)
    with pytest.raises(TypeError, match="Tensor"):  # storage and graph unseen
        small.put("tensor", {"weights": torch.zeros(10)})
    with pytest.raises(TypeError, match="own its buffer"):  # keeps its whole base alive
        small.put("view", {"weights": np.zeros((100, 100))[:2]})
    small.put("large", {"weights": np.zeros(2_000)})  # 16 kB > the budget: not kept
    assert len(small) == 0 and small.nbytes == 0
    for k in range(5):
        small.put(k, {"weights": np.zeros(500)})  # about 4.2 kB each
    assert len(small) == 2 and list(small._items) == [3, 4]
    assert small.nbytes == 2 * session.stored_nbytes({"weights": np.zeros(500)})


def test_filter_window_holds_99_percent_and_widens(client):
    params = {"model": "bf-dncnn-gray", "x": 18, "y": 15}
    fitted = client.get("/api/filter", params=params).json()
    assert fitted["window_share"] >= 0.99 and fitted["window_radius"] == fitted["window_99"]
    narrower = client.get("/api/filter", params={**params, "radius": fitted["window_99"] - 1})
    assert narrower.json()["window_share"] < 0.99 or fitted["window_99"] == 3
    wide = client.get("/api/filter", params={**params, "radius": 2 * fitted["window_99"]}).json()
    assert wide["size"][0] >= fitted["size"][0] and wide["sum"] == fitted["sum"]


def test_a_stopped_job_frees_its_tensors_at_once():
    """A cancelled computation's activations are freed when the request ends, without
    waiting for the garbage collector (its traceback would hold them in a cycle)."""
    import asyncio
    import gc
    import weakref

    from filterscope.analysis.jacobian import Cancelled
    from filterscope.explore.server import Worker

    def stopped_job(kept: list) -> None:
        activations = torch.ones(1 << 16)
        kept.append(weakref.ref(activations))
        raise Cancelled()

    def failing_job(kept: list) -> None:
        activations = torch.ones(1 << 16)
        kept.append(weakref.ref(activations))
        raise ValueError("an unexpected failure")

    async def ask(worker: Worker, job) -> tuple[weakref.ref, BaseException]:
        kept: list = []
        try:
            await worker.run(job, kept)
        except Exception as exc:
            return kept[0], exc
        raise AssertionError("the job did not fail")

    worker = Worker()
    gc.disable()
    try:
        stopped, cancelled = asyncio.run(ask(worker, stopped_job))
        failed, error = asyncio.run(ask(worker, failing_job))
        assert isinstance(cancelled, Cancelled) and stopped() is None
        # An unexpected error keeps its traceback for the log, without the frames' locals.
        assert isinstance(error, ValueError) and error.__traceback__ is not None
        assert failed() is None
        # What the worker guards against: an exception kept with its frames keeps them.
        kept: list = []
        try:
            stopped_job(kept)
        except Cancelled as exc:
            held = exc
        assert kept[0]() is not None
        del held
    finally:
        gc.enable()
        worker.close()


def test_freed_heap_memory_is_given_back_where_glibc_is():
    import ctypes
    import platform

    from filterscope.explore.server import release_freed_memory

    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert release_freed_memory() is is_glibc
    if is_glibc:
        assert ctypes.CDLL("libc.so.6").malloc_trim(0) in (0, 1)


def test_a_model_with_a_noise_map_estimator_shows_the_map_it_was_fed(tmp_path):
    from PIL import Image

    import filterscope
    from filterscope.inference import estimated_noise_map

    torch.manual_seed(0)
    options = {"in_channels": 3, "widths": [4, 8], "blocks": 1}
    pooled = filterscope.create_model(
        "drunet", noise_estimator=True, pooled_noise_map=True, **options
    ).eval()
    plain = filterscope.create_model("drunet", **options).eval()
    with torch.no_grad():
        pooled.estimator.mix_root *= 2.0  # its map reads twice the noise: told apart below
    paths = [filterscope.save_model(net, tmp_path / f"{name}.safetensors")
             for name, net in (("pooled", pooled), ("plain", plain))]  # fmt: skip
    colour = clean_image().expand(1, 3, HEIGHT, WIDTH).contiguous()
    models = [load_model(str(path), 3) for path in paths]
    explorer = Explorer(colour, models, sigma=SIGMA / 255.0, seed=SEED)
    with TestClient(create_app(explorer, warm_up=False)) as client:
        pooled_name, plain_name = (str(path) for path in paths)
        summary = client.get("/api/output", params={"model": pooled_name}).json()["noise_map_255"]
        y = add_noise(colour.double(), SIGMA / 255.0, generator=SEED).float()
        level = estimated_noise_map(pooled, y)
        assert summary["mean"] == pytest.approx(255 * float(level.mean()), rel=1e-5)
        assert summary["min"] == pytest.approx(summary["max"], rel=1e-6)  # one level, pooled
        picture = client.get("/api/image/noise-map", params={"model": pooled_name})
        assert picture.status_code == 200
        shown_map = Image.open(io.BytesIO(picture.content))
        assert shown_map.size == (WIDTH, HEIGHT)
        assert np.allclose(np.asarray(shown_map, dtype=np.float64), 127.5, atol=1)  # 1 level
        # A network without an estimator has no map: none reported, the picture refused.
        assert "noise_map_255" not in client.get("/api/output", params={"model": plain_name}).json()
        refused = client.get("/api/image/noise-map", params={"model": plain_name})
        assert refused.status_code == 400 and "noise-map estimator" in refused.json()["error"]
        # The residual spans ±3 times the level the model was fed.
        residual = client.get("/api/image/residual", params={"model": pooled_name}).content
        shown = np.asarray(Image.open(io.BytesIO(residual)), dtype=np.float64) / 255.0
        with torch.no_grad():
            x_hat = pooled(y)
        span = 3.0 * float(level.square().mean().sqrt())
        assert span > 1.5 * 3.0 * SIGMA / 255.0  # not the image's σ
        expected = (0.5 + 0.5 * (y - x_hat)[0] / span).clamp(0, 1).permute(1, 2, 0).numpy()
        assert np.abs(shown - expected).max() < 2.5 / 255
