"""Screenshot of the Prefect UI showing a sweep flow run (docs/prefect-ui.png).

Starts a private ``prefect server``, runs a tiny single-edit sweep against it (tiny-gpt2, ROME,
the test cases), then points headless Chromium (Debian's ``chromium``) at the run's page.
Usage: ``python scripts/prefect_ui_screenshot.py [OUTPUT.png]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(output: Path) -> None:
    from editcollapse.ops.server import PrefectServer
    from tests.sweep_cases import write_files

    with tempfile.TemporaryDirectory(prefix="prefect-ui-") as tmp, \
            PrefectServer(Path(tmp) / "home") as server:
        cases, corpus = write_files(Path(tmp), 4)
        code = ("from editcollapse.flows.sweep import single_edit_sweep; "
                f"single_edit_sweep(model='tiny-gpt2', dataset={str(cases)!r}, ppl_corpus={str(corpus)!r}, "
                f"shard_size=2, warehouse={tmp + '/wh'!r}, run_id='ui-demo', progress_bar=False)")
        subprocess.run([sys.executable, "-c", code], env={**server.env, "HF_HUB_OFFLINE": "1"},
                       check=True, cwd=ROOT, timeout=900)
        flow_run = _latest_flow_run(server.api_url)
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={tmp}/chromium", "--virtual-time-budget=15000",
                        f"--screenshot={output.resolve()}", "--window-size=1400,900",
                        f"{server.url}/runs/flow-run/{flow_run}"], check=True, timeout=180)
    print(f"wrote {output} (flow run {flow_run})")


def _latest_flow_run(api_url: str) -> str:
    import json
    import urllib.request

    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=json.dumps(
        {"sort": "START_TIME_DESC", "limit": 1}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())[0]["id"]


if __name__ == "__main__":
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "prefect-ui.png")
