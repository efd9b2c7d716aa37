"""Screenshots of the console for the docs (``docs/img/console-*.png``).

``python -m citypilot.console.screenshots --out docs/img`` builds the demo city (the twin
generator, scale 1), plays a day of its devices through the ingest API so that charts and
key figures have something to show, then photographs the main views in headless Chromium:
the login, the whole metropole, an asset with its charts, and a street-level view.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from citypilot.console.bench import CHROMIUM, _chromium, _settle, prepare_city

USER, PASSWORD, KEY = "operator", "operator-demo", "cpd_console_screenshots_key"


def play_history(url: str, device_key: str, seed: int = 7, scale: float = 1.0) -> int:
    """Send a simulated day of the demo city's devices; returns the observations sent."""
    from citypilot.twin import HttpIngestClient, generate_city
    from citypilot.twin.backfill import play_recent_history

    async def play() -> int:
        async with HttpIngestClient(url, device_key) as sink:
            return await play_recent_history(sink, generate_city(seed=seed, scale=scale), seed)

    return asyncio.run(play())


def take_screenshots(url: str, out: Path, chromium: str = CHROMIUM) -> list[Path]:
    """Photograph the login, the city, an asset panel and a street-level view."""
    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with _chromium(chromium) as browser:
        page = browser.new_context(viewport={"width": 1920, "height": 1080}).new_page()
        page.goto(url + "/")
        page.get_by_test_id("login-username").fill(USER)
        shots.append(out / "console-login.png")
        page.screenshot(path=str(shots[-1]))
        page.get_by_test_id("login-password").fill(PASSWORD)
        page.get_by_test_id("login-submit").click()
        page.wait_for_function("() => window.__citypilot && window.__citypilot.ready")
        page.wait_for_timeout(2000)
        shots.append(out / "console-city.png")
        page.screenshot(path=str(shots[-1]))
        # The worst air-quality station, from its key figure.
        page.get_by_test_id("figure-air").click()
        page.wait_for_selector("[data-testid=asset-panel][data-loaded=true]")
        _settle(page)
        shots.append(out / "console-asset.png")
        page.screenshot(path=str(shots[-1]))
        page.keyboard.press("Escape")
        box = page.get_by_test_id("map").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        for _ in range(12):
            page.mouse.wheel(0, -240)
            page.wait_for_timeout(80)
        _settle(page)
        shots.append(out / "console-street.png")
        page.screenshot(path=str(shots[-1]))
    return shots


def main() -> None:  # pragma: no cover - run by hand to refresh the docs
    """Build the demo city, play a day of it, photograph the console."""
    from citypilot.bench.server import server_process

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    p.add_argument("--data-dir", type=Path, help="keep the city here (default: a temp dir)")
    args = p.parse_args()
    with contextlib.ExitStack() as stack:
        data = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        fresh = not (data / "city.db").exists()
        if fresh:
            prepare_city(data, accounts=((USER, PASSWORD, "operator"),), device_key=KEY)
        url = stack.enter_context(server_process(data, timeout=300))
        if fresh:
            t = time.perf_counter()
            n = play_history(url, KEY)
            print(f"played {n:,} observations in {time.perf_counter() - t:.0f} s")
        for path in take_screenshots(url, args.out):
            print(path)


if __name__ == "__main__":  # pragma: no cover
    main()
