"""The views a stakeholder opens first, in real Chromium on a started app (issue 24's goals).

    .venv/bin/python benchmarks/stakeholder.py [--scenarios off,on] [--delay S] [--repo PATH] [--engines DIR]

Each scenario starts the app exactly as ``scripts/run.sh`` does (``python -m ui.launch``: the tile server,
then Streamlit; real processes on free loopback ports) with an empty data folder and prediction cache, and
the CPU engines already exported (copied from ``--engines``, default the user cache's ``onnx`` folder).
As soon as Streamlit answers, Chromium (Debian's, through Playwright) measures:

- the zone view ``/Explore?patch=ZONE_D034_2021_Z6_NU`` (demo zone, default model's live predictions), cold
  (nothing predicted yet) and warm (a second visit in a new browser context, same servers);
- Home until its four "Show me" buttons show, first visit and second visit (Streamlit's caches warm);
- Show me 3 (click on Home's third button) until its prediction tiles are drawn.

A layer is *drawn* when every Leaflet tile image of it in the page is loaded (``leaflet-tile-loaded``) and
none of its requests is pending; its time is the last moment it became so (a map that fits its bounds after
a first zoom draws twice), from the request of the page (from the click for Show me 3). Each prediction
time is printed beside the aerial tiles' time of the same view in the same run, and as their ratio, which
depends less on what else the CPU is doing; when the page first asked each kind of tile is printed too (what
the page switch costs before any tile is asked). Cancelled tile requests (``net::ERR_ABORTED``) are counted as
the zone view opens.

Scenarios: ``off`` runs with ``FLAIR_VIZ_WARM=0`` (every prediction on demand, when the map asks),
``on`` with the default ``FLAIR_VIZ_WARM=1`` (``serve`` predicts the story's patch and zone as it starts).
``--delay S`` opens the cold zone view S seconds after the app answers (a user who reads Home first) instead of
at once. ``--repo`` runs another checkout's app (e.g. an older commit from ``git archive``) with this script.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, free_port, python  # noqa: E402
from startup import wait_200  # noqa: E402

ZONE = "ZONE_D034_2021_Z6_NU"
CHROMIUM = os.environ.get("FLAIR_VIZ_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]
SIZE = {"width": 1600, "height": 1000}  # the browser tests' window

# Every frame's Leaflet tiles: (src, loaded). Folium maps live in component iframes.
TILES_JS = """() => Array.from(document.querySelectorAll('img.leaflet-tile'))
    .map(i => [i.src, i.classList.contains('leaflet-tile-loaded')])"""


def kind(url: str, aerial: str) -> str | None:
    """prediction, aerial (``aerial``: a regex of the image's dataset ID), other, or None (not a tile)."""
    if "/tiles/WebMercatorQuad/" not in url:
        return None
    if "/predict/" in url:
        return "prediction"
    return "aerial" if re.search(f"/datasets/{aerial}/tiles/", url) else "other"


class View:
    """Watches one page: tile requests (pending, cancelled) and, by polling, when each layer is drawn."""

    def __init__(self, page, aerial: str) -> None:
        self.page, self.aerial = page, aerial
        self.pending: dict[str, set] = {"aerial": set(), "prediction": set(), "other": set()}
        self.cancelled: dict[str, int] = {"aerial": 0, "prediction": 0, "other": 0}
        self.requested: dict[str, int] = {"aerial": 0, "prediction": 0, "other": 0}
        self.zooms: set[int] = set()
        self.first: dict[str, float] = {}  # perf_counter of each kind's first tile request
        page.on("request", self._request)
        page.on("requestfinished", lambda r: self._end(r, False))
        page.on("requestfailed", lambda r: self._end(r, "ERR_ABORTED" in (r.failure or "")))

    def _request(self, r) -> None:
        k = kind(r.url, self.aerial)
        if k:
            self.pending[k].add(r)
            self.requested[k] += 1
            self.first.setdefault(k, time.perf_counter())
            if k == "prediction":
                self.zooms.add(int(r.url.split("/WebMercatorQuad/")[1].split("/")[0]))

    def _end(self, r, aborted: bool) -> None:
        k = kind(r.url, self.aerial)
        if k:
            self.pending[k].discard(r)
            self.cancelled[k] += bool(aborted)

    def drawn(self) -> dict[str, bool]:
        tiles: list = []
        for frame in self.page.frames:
            try:
                tiles += frame.evaluate(TILES_JS)
            except Exception:  # a frame navigating away: its tiles are gone
                continue
        out = {}
        for k in ("aerial", "prediction"):
            mine = [ok for src, ok in tiles if kind(src, self.aerial) == k]
            out[k] = bool(mine) and all(mine) and not self.pending[k]
        return out

    def watch(self, t0: float, timeout: float = 240, settle: float = 3.0) -> dict[str, float]:
        """Seconds from ``t0`` to the last time each layer became drawn, once both stayed drawn ``settle`` s."""
        became: dict[str, float] = {}
        last = {"aerial": False, "prediction": False}
        stable_since = None
        while time.perf_counter() - t0 < timeout:
            now, state = time.perf_counter(), self.drawn()
            for k, v in state.items():
                if v and not last[k]:
                    became[k] = now - t0
                last[k] = v
            if all(state.values()):
                stable_since = stable_since or now
                if now - stable_since >= settle:
                    return became | {f"{k}_asked": self.first[k] - t0 for k in ("aerial", "prediction")}
            else:
                stable_since = None
            self.page.wait_for_timeout(100)
        return {k: became.get(k, float("nan")) if last[k] else float("nan") for k in last}


def open_view(browser, url: str, aerial: str) -> tuple[dict[str, float], View]:
    context = browser.new_context(viewport=SIZE)
    page = context.new_page()
    view = View(page, aerial)
    t0 = time.perf_counter()
    page.goto(url)
    times = view.watch(t0)
    context.close()
    return times, view


def home(browser, app: str, click: int | None = None) -> dict[str, float]:
    """Seconds to Home's four "Show me" buttons; with ``click``, also Show me ``click``'s tiles drawn."""
    context = browser.new_context(viewport=SIZE)
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(f"{app}/")
    buttons = page.get_by_role("button", name="Show me")
    while buttons.count() < 4 and time.perf_counter() - t0 < 120:
        page.wait_for_timeout(20)
    buttons.nth(3).wait_for(state="visible", timeout=1000)
    out = {"buttons": time.perf_counter() - t0}
    if click is not None:
        view = View(page, aerial="IMG_[^/]+")  # a patch view: its aerial layer is the patch image
        t1 = time.perf_counter()
        buttons.nth(click - 1).click()
        out |= {f"show{click}_{k}": v for k, v in view.watch(t1).items()}
    context.close()
    return out


def engines_copy(src: Path, cache: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, cache / "onnx")


def start_app(repo: Path, data: Path, warm: bool) -> tuple[subprocess.Popen, str, str, float]:
    tport, aport = free_port(), free_port()
    env = {**os.environ, "FLAIR_VIZ_DATA": str(data), "FLAIR_VIZ_CACHE": str(data / "cache"),
           "FLAIR_VIZ_TILE_PORT": str(tport), "FLAIR_VIZ_TILES_URL": f"http://127.0.0.1:{tport}",
           "FLAIR_VIZ_WARM": "1" if warm else "0"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([python(), "-m", "ui.launch", "--server.port", str(aport), "--server.address", "127.0.0.1",
                             "--server.headless", "true", "--server.enableStaticServing", "true",
                             "--browser.gatherUsageStats", "false"], cwd=repo, env=env,
                            stdout=open(data / "servers.log", "wb"), stderr=subprocess.STDOUT)
    app = f"http://127.0.0.1:{aport}"
    wait_200(f"{app}/_stcore/health", timeout=180)
    return proc, app, f"http://127.0.0.1:{tport}", time.perf_counter() - t0


def stop(proc: subprocess.Popen) -> None:
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    _, alive = psutil.wait_procs(children, timeout=10)
    for c in alive:
        c.kill()


def scenario(browser, repo: Path, engines: Path, warm: bool, delay: float = 0.0) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="flair-viz-stakeholder-") as t:
        data = Path(t)
        (data / "cache").mkdir()
        engines_copy(engines, data / "cache")
        proc, app, _, up = start_app(repo, data, warm)
        try:
            r: dict[str, float] = {"app_up": up, "delay": delay}
            time.sleep(delay)  # a user reading Home before opening the zone
            cold, view = open_view(browser, f"{app}/Explore?patch={ZONE}", re.escape(ZONE))
            r |= {f"zone_cold_{k}": v for k, v in cold.items()}
            r |= {"cancelled_aerial": view.cancelled["aerial"], "cancelled_prediction": view.cancelled["prediction"],
                  "requested_prediction": view.requested["prediction"], "zooms": ",".join(map(str, sorted(view.zooms)))}
            warm_view, _ = open_view(browser, f"{app}/Explore?patch={ZONE}", re.escape(ZONE))
            r |= {f"zone_warm_{k}": v for k, v in warm_view.items()}
            r |= {"home_first": home(browser, app)["buttons"]}
            second = home(browser, app, click=3)
            r |= {"home_warm": second.pop("buttons"), **second}
        finally:
            stop(proc)
            said = [line for line in (data / "servers.log").read_text(errors="replace").splitlines()
                    if line.startswith("flair-viz:")]
            print("\n".join(f"  server: {line}" for line in said) or "  server: nothing predicted ahead")
    return r


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b == b and a == a and b > 0 else "n/a"


def report(name: str, r: dict) -> None:
    print(f"\n== scenario {name}: app up {r['app_up']:.1f} s after launch; zone view opened {r['delay']:.0f} s later")
    for label, key in (("zone view, cold", "zone_cold"), ("zone view, warm", "zone_warm"), ("Show me 3", "show3")):
        a, p = r.get(f"{key}_aerial", float("nan")), r.get(f"{key}_prediction", float("nan"))
        asked = (f" (first asked {r[f'{key}_aerial_asked']:.2f} / {r[f'{key}_prediction_asked']:.2f} s)"
                 if f"{key}_aerial_asked" in r else "")
        print(f"{label:18s} aerial drawn {a:6.2f} s · predictions drawn {p:6.2f} s · ratio {ratio(p, a)}{asked}")
    print(f"zone view opening: {r['requested_prediction']} prediction tile requests (zooms {r['zooms']}), cancelled: "
          f"{r['cancelled_prediction']} prediction + {r['cancelled_aerial']} aerial")
    print(f"Home 'Show me' buttons: first visit {r['home_first']:.2f} s, second visit {r['home_warm']:.2f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="off,on", help="comma-separated: off (FLAIR_VIZ_WARM=0), on (default)")
    ap.add_argument("--delay", type=float, default=0.0,
                    help="seconds between the app answering and the cold zone view (default 0: at once)")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose app is started (default: this one)")
    ap.add_argument("--engines", type=Path, default=Path.home() / ".local/share/flair-viz/cache/onnx",
                    help="exported engines to start with (copied; missing: the first tile exports them)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers (finally) when killed
    from playwright.sync_api import sync_playwright

    print(f"{psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; repo {args.repo}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name in args.scenarios.split(","):
            report(name, scenario(browser, args.repo.resolve(), args.engines, warm=name == "on", delay=args.delay))
        browser.close()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
