"""A bundle is verified on load: checksums, schema version, and files named in errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.cli import main
from recsys.bundle import SCHEMA_VERSION, load_bundle, read_manifest
from recsys.errors import BundleError
from recsys.recommender import load_recommender


@pytest.fixture()
def copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "b"))


def test_manifest_records_what_a_report_needs(tiny_bundle: Path) -> None:
    m = read_manifest(tiny_bundle)
    assert m["schema_version"] == SCHEMA_VERSION and m["version"]
    assert len(m["data"]["fingerprint"]) == 64
    assert m["data"]["split"]["valid_start"] < m["data"]["split"]["test_start"]
    for name in ("popularity", "als", "content"):
        assert set(m["models"][name]["valid_metrics"]) == {"ndcg@10", "recall@20"}
        assert name in m["timings_seconds"]
    assert m["models"]["als"]["curve"] and m["models"]["content"]["curve"]
    assert m["ranker"]["queries"] > 0 and m["ranker"]["importances"]
    assert m["config"]["split"] == {"train": 0.7, "valid": 0.15}
    assert "torch" in m["libraries"] and "implicit" in m["libraries"]
    assert all(len(v) == 64 for v in m["checksums"].values())


def test_flipped_byte_is_caught(copy: Path) -> None:
    target = copy / "models" / "als" / "mf.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"models/als/mf\.npz: checksum mismatch"):
        load_bundle(copy)


def test_missing_file_and_bad_schema(copy: Path) -> None:
    (copy / "hybrid" / "ranker.txt").unlink()
    with pytest.raises(BundleError, match=r"hybrid/ranker\.txt: missing"):
        load_recommender(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = SCHEMA_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema_version"):
        load_bundle(copy)


def test_cli_reports_a_broken_bundle_in_one_line(copy: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "ids.npz").write_bytes(b"garbage")
    users = tmp_path / "users.txt"
    users.write_text("u1\n")
    assert main(["recommend", "--bundle", str(copy), "--users", str(users),
                 "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "ids.npz" in err and "checksum" in err and "\n" not in err
