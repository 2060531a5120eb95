"""The README's report screenshot, made from a real default build (issue 16): never drawn by hand.

Runs ``scbp-edge build --target cpu`` (the README's main job) into a temporary folder, unless a
run directory is given, opens its report.html in headless Chromium (through Playwright, both
installed by scripts/bootstrap.sh) and saves the first screen to docs/report.png.
Run:  .venv/bin/python scripts/report_screenshot.py [RUN_DIR]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "report.png"


def shoot(run_dir: Path, out: Path = OUT) -> Path:
    """Save the report's first 1280x1000 pixels as a PNG."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: Chromium is not installed; run scripts/bootstrap.sh as root")
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto((run_dir / "report.html").as_uri())
        page.screenshot(path=str(out))
        browser.close()
    return out


def main() -> int:
    if len(sys.argv) > 1:
        print(shoot(Path(sys.argv[1])))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([sys.executable, "-m", "scbp_edge.cli.main", "build", "--target", "cpu", "--runs", tmp,
                              "--json"], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"error: the default build failed: {res.stderr.strip()[-500:]}")
        print(shoot(Path(json.loads(res.stdout)["run_dir"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
