"""Render a page in headless Chromium and report its console messages and network requests.

Chromium's command line prints every console message of the page to stderr (``--enable-logging
=stderr``), and its net log records every URL request with the origin that started it: the
page's own requests come from its ``file://`` origin, Chromium's background ones (update checks,
which the flags below switch off where they can) from "not an origin".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Flags without which Chromium tries to reach its update and sync services at start-up.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


@dataclass(frozen=True, slots=True)
class Rendering:
    """What Chromium saw: console messages, requests the page made, and the screenshot."""

    console: list[str]
    requests: list[str]
    screenshot: Path


def chromium() -> str | None:
    """Path of the Chromium binary, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(page: Path, screenshot: Path, *, width: int = 1280, height: int = 2400) -> Rendering:
    """Open ``page`` in headless Chromium, save a screenshot and collect what it logged."""
    binary = chromium()
    assert binary is not None, "chromium is not installed (apt-get install chromium)"
    work = screenshot.parent / f".{screenshot.stem}-chromium"
    work.mkdir(parents=True, exist_ok=True)
    netlog = work / "netlog.json"
    done = subprocess.run(
        [
            binary,
            *FLAGS,
            f"--user-data-dir={work / 'profile'}",
            f"--log-net-log={netlog}",
            f"--screenshot={screenshot}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [m.group(1) for m in map(_CONSOLE.search, done.stderr.splitlines()) if m]
    return Rendering(console=console, requests=_page_requests(netlog), screenshot=screenshot)


def _page_requests(netlog: Path) -> list[str]:
    """URLs of network requests started by a page (not by the browser itself)."""
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short lacks its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] == start and params.get("initiator") != "not an origin":
            url = str(params.get("url", ""))
            if url and not url.startswith(("file:", "data:")):
                urls.append(url)
    return urls
