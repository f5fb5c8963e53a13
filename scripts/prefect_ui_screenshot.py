"""Screenshots of the Prefect UI (docs/prefect-ui.png, docs/prefect-ui-study.png).

Starts a private ``prefect server``, runs a tiny flow against it (tiny-gpt2, ROME, the test
cases), then points headless Chromium (Debian's ``chromium``) at the run's page.

    python scripts/prefect_ui_screenshot.py [OUTPUT.png]            # a single-edit sweep run
    python scripts/prefect_ui_screenshot.py --study [OUTPUT.png]    # the end-to-end study run:
        every stage a subflow (sweep, HardCF, sequential, HardEdit generate + filter — a scripted
        OpenAI-compatible endpoint stands in for the LLM — downstream, analysis)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEP = (
    "from editcollapse.orchestration.flows.sweep import single_edit_sweep; "
    "from editcollapse.stages.sweep.plan import SweepConfig; "
    "single_edit_sweep(SweepConfig(model='tiny-gpt2', dataset={cases!r}, ppl_corpus={corpus!r}, "
    "shard_size=2, run_id='ui-demo'), warehouse={warehouse!r}, progress_bar=False)"
)
STUDY = """
import json
from editcollapse.stages.downstream.catalog import LASTWORD
from editcollapse.orchestration.flows.study import editcollapse_study
from editcollapse.stages.study import DownstreamPart, HardEditPart, SequentialPart, StudyConfig
from tests.test_hardedit_generate import FakeOpenAI
records = [{{"prompt": "Nintendo is based in", "subject": "Nintendo", "target_new": "Lisbon", "ground_truth": "Kyoto"}},
           {{"prompt": "Sony's headquarters are in", "subject": "Sony", "target_new": "Lagos", "ground_truth": "Tokyo"}}]
with FakeOpenAI([("ok", json.dumps(records))]) as llm:
    config = StudyConfig(model="tiny-gpt2", dataset={cases!r}, shard_size=3, ppl_corpus={corpus!r},
                         sequential=SequentialPart(n_edits=2, trials=1),
                         hardedit=HardEditPart(backend="openai", calls=1, model="fake-gpt", base_url=llm.base_url),
                         downstream=DownstreamPart(tasks=(LASTWORD,), limit=3, k=1))
    editcollapse_study(config=config, warehouse={warehouse!r})
"""


def main(output: Path, study: bool) -> None:
    from editcollapse.orchestration.ops.server import PrefectServer
    from tests.sweep_cases import write_files

    with tempfile.TemporaryDirectory(prefix="prefect-ui-") as tmp, PrefectServer(Path(tmp) / "home") as server:
        cases, corpus = write_files(Path(tmp), 6 if study else 4)
        code = (STUDY if study else SWEEP).format(cases=str(cases), corpus=str(corpus), warehouse=tmp + "/wh")
        subprocess.run(
            [sys.executable, "-c", code], env={**server.env, "HF_HUB_OFFLINE": "1"}, check=True, cwd=ROOT, timeout=1800
        )
        flow_run = _flow_run(server.api_url, "editcollapse-study" if study else "single-edit-sweep")
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp}/chromium",
                "--virtual-time-budget=20000",
                f"--screenshot={output.resolve()}",
                "--window-size=1600,1000",
                f"{server.url}/runs/flow-run/{flow_run}",
            ],
            check=True,
            timeout=300,
        )
    print(f"wrote {output} (flow run {flow_run})")


def _flow_run(api_url: str, flow_name: str) -> str:
    """The newest flow run of the flow named ``flow_name``."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter",
        data=json.dumps({"sort": "START_TIME_DESC", "limit": 1, "flows": {"name": {"any_": [flow_name]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())[0]["id"]


if __name__ == "__main__":
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    arguments = [a for a in sys.argv[1:] if a != "--study"]
    is_study = "--study" in sys.argv[1:]
    default = ROOT / "docs" / ("prefect-ui-study.png" if is_study else "prefect-ui.png")
    main(Path(arguments[0]) if arguments else default, is_study)
