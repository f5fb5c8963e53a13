"""Named sources: data roots, download into the cache with a sha256 check (against a local HTTP
server on 127.0.0.1), and the offline message that says which file to put where."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from editcollapse.cli import app
from editcollapse.datasets import load_cases, sources
from editcollapse.datasets.download import ChecksumMismatch, DataUnavailable, fetch
from editcollapse.datasets.sources import DataFile, Source, locate

DATA = Path(__file__).parent / "data" / "datasets"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args: object) -> None:
        _Quiet.requests.append(self.path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 (ephemeral port) over a temporary folder."""
    root = tmp_path / "served"
    root.mkdir()
    _Quiet.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data roots but a private cache."""
    monkeypatch.delenv("EDITCOLLAPSE_DATA", raising=False)
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fetch_downloads_checks_and_caches(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    payload = (DATA / "HardEdit.json").read_bytes()
    (root / "HardEdit.json").write_bytes(payload)
    dest = tmp_path / "cache" / "hardedit" / "HardEdit.json"
    assert fetch(f"{url}/HardEdit.json", dest, sha256=hashlib.sha256(payload).hexdigest()) == dest
    assert dest.read_bytes() == payload
    fetch(f"{url}/HardEdit.json", dest, sha256=hashlib.sha256(payload).hexdigest())
    assert _Quiet.requests.count("/HardEdit.json") == 1  # the second call used the cached copy


def test_fetch_rejects_a_checksum_mismatch(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    (root / "tampered.json").write_text("[]")
    dest = tmp_path / "cache" / "tampered.json"
    with pytest.raises(ChecksumMismatch, match="does not match the pinned"):
        fetch(f"{url}/tampered.json", dest, sha256="0" * 64)
    assert not dest.exists() and not list(dest.parent.iterdir())  # no partial file left behind


def test_fetch_unreachable_names_url_and_destination(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "cache" / "absent.json"
    with pytest.raises(DataUnavailable) as info:
        fetch(f"{url}/absent.json", dest)
    assert f"{url}/absent.json" in str(info.value) and str(dest) in str(info.value)


def test_named_source_downloads_into_the_cache_and_loads(
    server: tuple[str, Path], isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    payload = (DATA / "zsre_mend_eval.json").read_bytes()
    (root / "zsre_mend_eval.json").write_bytes(payload)
    test_source = Source(
        "zsre-test",
        "zsre",
        "served locally",
        ((DataFile("zsre/zsre_mend_eval.json", f"{url}/zsre_mend_eval.json", hashlib.sha256(payload).hexdigest()),),),
    )
    monkeypatch.setitem(sources.SOURCES, "zsre-test", test_source)
    load = load_cases("zsre-test")
    assert load.files == [str(isolated / "data" / "zsre" / "zsre_mend_eval.json")]
    assert [c.case_id for c in load.cases] == ["zsre:eval/0", "zsre:eval/1"]


def test_offline_message_says_which_file_goes_where(isolated: Path) -> None:
    with pytest.raises(DataUnavailable) as info:
        locate("hardedit")
    message = str(info.value)
    assert "hardedit/HardEdit.json" in message and str(isolated / "data") in message
    assert "EDITCOLLAPSE_DATA" in message and "not public" in message
    with pytest.raises(DataUnavailable, match="counterfact/counterfact-edit.json"):
        locate("counterfact", download=False)


def test_data_roots_are_searched_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        (root / "hardedit").mkdir(parents=True)
        (root / "hardedit" / "HardEdit.json").write_text((DATA / "HardEdit.json").read_text())
    monkeypatch.setenv("EDITCOLLAPSE_DATA", os.pathsep.join([str(first), str(second)]))
    assert locate("hardedit") == [first / "hardedit" / "HardEdit.json"]


def test_pinned_checksums_match_the_shared_copies(shared_data: Path) -> None:
    from editcollapse.datasets.download import sha256_of

    pinned = [f for s in sources.SOURCES.values() for layout in s.layouts for f in layout if f.sha256]
    assert len(pinned) == 8
    for data_file in pinned:
        assert sha256_of(shared_data / data_file.relpath) == data_file.sha256, data_file.relpath


def test_cli_list_show_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITCOLLAPSE_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("EDITCOLLAPSE_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    listed = runner.invoke(app, ["data", "list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0, listed.output
    for name in ("geofacts", "counterfact", "zsre", "qaedit", "hardedit", "me-ppl-50", "embedded-1k"):
        assert name in listed.output
    shown = runner.invoke(app, ["data", "show", str(DATA / "rome_counterfact.json"), "--limit", "1"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["case_id"] == "counterfact:0"
    errors_file = tmp_path / "errors.jsonl"
    checked = runner.invoke(
        app, ["data", "validate", str(DATA / "rome_counterfact.json"), "--errors-out", str(errors_file)]
    )
    assert checked.exit_code == 1
    assert "2 valid cases, 5 error rows" in checked.output
    rows = [json.loads(line) for line in errors_file.read_text().splitlines()]
    assert [row["index"] for row in rows] == [2, 3, 4, 5, 6]
    zsre = runner.invoke(app, ["data", "validate", str(DATA / "zsre_mend_eval.json"), "--show-errors", "0"])
    assert zsre.exit_code == 1 and "2 valid cases, 3 error rows" in zsre.output
