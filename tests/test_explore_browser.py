"""`filterscope explore` in a real browser: headless Chromium loads the page, a click on a
pixel shows the library's filter values. Skips when Selenium or Chromium is missing
(Debian: `apt-get install chromium chromium-driver`, then `pip install selenium`)."""

from __future__ import annotations

import shutil

import pytest
import torch

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
selenium = pytest.importorskip("selenium", reason="selenium is not installed")

from filterscope.analysis import adaptive_filters  # noqa: E402
from filterscope.explore import Explorer, load_model  # noqa: E402
from filterscope.explore.server import BackgroundServer, create_app  # noqa: E402
from filterscope.noise import add_noise  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _which(names: tuple[str, ...]) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _which(BROWSERS), _which(DRIVERS)
    if binary is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver found (Debian: chromium chromium-driver)")
    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1300,1000")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def test_click_shows_the_library_filter(browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    rows = torch.linspace(0, 1, 31)[:, None]
    cols = torch.linspace(0, 1, 37)[None, :]
    clean = (0.3 + 0.4 * rows * cols)[None, None]
    model = load_model("bf-dncnn-gray", 1)
    explorer = Explorer(clean, [model], sigma=25 / 255.0, seed=1)
    server = BackgroundServer(create_app(explorer))
    try:
        browser.get(server.url)
        WebDriverWait(browser, 60).until(
            lambda d: d.execute_script("return document.body.dataset.ready")
        )
        x, y = 11, 23
        view = browser.find_element(By.CSS_SELECTOR, '.view[data-kind="noisy"]')
        # Offsets of the pixel's centre from the view's centre (Selenium 4 convention).
        dx, dy = browser.execute_script(
            """const [view, x, y] = arguments, img = view.querySelector("img");
            const r = img.getBoundingClientRect(), v = view.getBoundingClientRect();
            return [r.left + (x + 0.5) * r.width / img.width - (v.left + v.width / 2),
                    r.top + (y + 0.5) * r.height / img.height - (v.top + v.height / 2)];""",
            view,
            x,
            y,
        )
        ActionChains(browser).move_to_element_with_offset(
            view, round(dx), round(dy)
        ).click().perform()
        WebDriverWait(browser, 120).until(
            lambda d: d.execute_script("return document.body.dataset.filtersShown") == f"{x},{y}"
        )
        card = browser.find_element(By.CSS_SELECTOR, '.filter-card[data-model="bf-dncnn-gray"]')
        noisy = add_noise(clean.double(), 25 / 255.0, generator=1)
        (expected,) = adaptive_filters(model.denoiser, noisy, [(x, y)])
        t, _, left, _ = expected.row.box
        assert card.get_attribute("data-pixel") == f"{x},{y}"
        assert float(card.get_attribute("data-sum")) == pytest.approx(expected.sum, abs=1e-5)
        centre = float(expected.row.weights[0, y - t, x - left])
        assert float(card.get_attribute("data-center")) == pytest.approx(centre, abs=1e-5)
        shown = card.find_element(By.CSS_SELECTOR, ".sum").text
        assert shown == f"sum of weights {expected.sum:.4f}"
        # The keyboard picks too: the right arrow moves one pixel to the right.
        view.send_keys("\ue014")  # Keys.ARROW_RIGHT
        WebDriverWait(browser, 120).until(
            lambda d: (
                d.execute_script("return document.body.dataset.filtersShown") == f"{x + 1},{y}"
            )
        )
    finally:
        server.stop()


def test_a_model_with_a_noise_map_estimator_shows_its_map(browser, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    import filterscope

    torch.manual_seed(0)
    net = filterscope.create_model(
        "drunet", in_channels=3, widths=[4, 8], blocks=1, noise_estimator=True,
        pooled_noise_map=True,
    )  # fmt: skip
    path = filterscope.save_model(net.eval(), tmp_path / "pooled.safetensors")
    clean = torch.linspace(0.2, 0.8, 37).expand(1, 3, 31, 37).contiguous()
    explorer = Explorer(clean, [load_model(str(path), 3)], sigma=25 / 255.0, seed=1)
    server = BackgroundServer(create_app(explorer))
    try:
        browser.get(server.url)
        shown = """const figure = document.getElementById("noise-map-figure");
            return !figure.hidden && figure.querySelector("img").src.startsWith("blob:")
                && document.getElementById("noise-map-info").textContent;"""
        text = WebDriverWait(browser, 120).until(lambda d: d.execute_script(shown))
        assert text.startswith("(σ mean ")
    finally:
        server.stop()
