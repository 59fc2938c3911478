"""Shared fixtures. Real datasets come from LMFORGE_DATASETS (default ../shared/datasets); tests that
need them skip cleanly when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    return Path(os.environ.get("LMFORGE_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    d = datasets_dir()
    if not d.exists():
        pytest.skip(f"shared datasets not found at {d} (set LMFORGE_DATASETS)")
    return d


@pytest.fixture(scope="session")
def shakespeare(shared_datasets) -> str:
    path = shared_datasets / "pretrain" / "tinyshakespeare" / "input.txt"
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path.read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _few_threads():
    """Tests share 2 cores; keep torch from oversubscribing them."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def driver():
    """Headless Chromium through Selenium and Debian's chromedriver (no Selenium Manager download);
    the browser tests of the annotation page and the serving playground skip without them."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    chromedriver = shutil.which("chromedriver")
    if not browser or not chromedriver:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()
