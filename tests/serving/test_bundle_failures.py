"""A bundle that cannot be loaded is refused the same way everywhere: a 422 problem naming the
cause on ``POST /v1/admin/reload`` (never a 500; the old bundle keeps serving), and one line
with exit code 2 from ``recsys serve``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]


def _edit_manifest(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def apply(bundle: Path) -> None:
        path = bundle / "manifest.json"
        manifest = json.loads(path.read_text())
        path.write_text(json.dumps(edit(manifest)))
    return apply


def _rename_checksums(m: dict[str, Any]) -> dict[str, Any]:
    m["checksumz"] = m.pop("checksums")
    return m


def _flip_a_byte(bundle: Path) -> None:
    target = max((p for p in bundle.rglob("*") if p.is_file() and p.name != "manifest.json"),
                 key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


BREAKAGES: dict[str, Callable[[Path], None]] = {
    "checksums key renamed": _edit_manifest(_rename_checksums),
    "checksums corrupted file": _flip_a_byte,
    "manifest is a list": _edit_manifest(lambda m: [m]),
    "models is a number": _edit_manifest(lambda m: {**m, "models": 5}),
    "checksums is a list": _edit_manifest(lambda m: {**m, "checksums": ["x"]}),
    "manifest not JSON": lambda b: (b / "manifest.json").write_text("{not json"),
    "manifest missing": lambda b: (b / "manifest.json").unlink(),
}


@pytest.fixture
def broken(serving_bundle: Path, tmp_path: Path) -> Callable[[str], Path]:
    def make(kind: str) -> Path:
        out = tmp_path / kind.replace(" ", "-")
        shutil.copytree(serving_bundle, out)
        BREAKAGES[kind](out)
        return out
    return make


@pytest.mark.parametrize("kind", list(BREAKAGES))
def test_reload_of_a_broken_bundle_is_a_422_problem(kind: str, broken: Callable[[str], Path],
                                                    make_settings: Any) -> None:
    path = broken(kind)
    with TestClient(create_app(make_settings()), headers={"X-API-Key": ADMIN_KEY},
                    raise_server_exceptions=False) as c:
        before = c.get("/readyz").json()["bundles"]["default"]
        r = c.post("/v1/admin/reload", json={"bundle": "default", "path": str(path)})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert str(path) in r.json()["detail"]
        assert c.get("/readyz").json()["bundles"]["default"] == before   # old one serves
        ok = c.post("/v1/recommendations", json={"k": 3})
        assert ok.status_code == 200


def test_reload_path_with_a_nul_byte_is_a_422(make_settings: Any) -> None:
    with TestClient(create_app(make_settings()), headers={"X-API-Key": ADMIN_KEY},
                    raise_server_exceptions=False) as c:
        r = c.post("/v1/admin/reload", json={"bundle": "default", "path": "/tmp/a\u0000b"})
        assert r.status_code == 422, r.text


@pytest.mark.parametrize("kind", ["checksums key renamed", "manifest is a list",
                                  "checksums corrupted file", "manifest not JSON"])
def test_serve_on_a_broken_bundle_is_one_line_and_exit_2(kind: str,
                                                         broken: Callable[[str], Path]) -> None:
    path = broken(kind)
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "serve", "--bundle", str(path),
                          "--port", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recsys serve: error: bundle 'default'"), \
        run.stderr
