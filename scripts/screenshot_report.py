#!/usr/bin/env python3
"""Screenshot a self-contained HTML report with headless Chromium, as a person at a desktop would see it.

    python scripts/screenshot_report.py reports/format_ablation_cpu/report.html [--out-dir DIR] [--full-page]

Writes ``report-first-screen.png`` (1440 x 900, the first screen) and, with
``--full-page``, ``report-full-page.png`` beside the report (or in --out-dir).
Needs Debian's ``chromium`` (``apt-get install -y chromium``; not installed by
``make setup``: it is large). The page is loaded from a file:// URL with the
network disabled, so a report that needed a server or an external URL would
show it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH, HEIGHT = 1440, 900
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable on PATH, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, png: Path, *, width: int = WIDTH, height: int = HEIGHT, timeout: float = 120.0) -> Path:
    """Render ``html`` at ``width`` x ``height`` CSS pixels into ``png``; raises if Chromium fails or writes nothing."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found on PATH (Debian: apt-get install -y chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="report-shot-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--user-data-dir={profile}", "--force-device-scale-factor=1", "--virtual-time-budget=3000",
               f"--window-size={width},{height}", f"--screenshot={png}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium exited {proc.returncode} without a screenshot: {proc.stderr.strip()[-500:]}")
    return png


def page_height(html: Path) -> int:
    """A generous height for a full-page shot: Chromium's --screenshot captures the window only."""
    size = html.stat().st_size
    return max(HEIGHT, min(16000, 3000 + size // 60))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("html", type=Path, help="the HTML report")
    p.add_argument("--out-dir", type=Path, default=None, help="where the PNGs go (default: beside the report)")
    p.add_argument("--full-page", action="store_true", help="also a tall screenshot of the page")
    args = p.parse_args(argv)
    if not args.html.is_file():
        print(f"{args.html}: not a file", file=sys.stderr)
        return 2
    out = args.out_dir or args.html.parent
    stem = args.html.stem
    try:
        shots = [screenshot(args.html, out / f"{stem}-first-screen.png")]
        if args.full_page:
            shots.append(screenshot(args.html, out / f"{stem}-full-page.png", height=page_height(args.html)))
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot failed: {exc}", file=sys.stderr)
        return 1
    for s in shots:
        print(f"wrote {s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
