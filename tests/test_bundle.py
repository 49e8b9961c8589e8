"""A bundle is verified on load: typed manifest, checksums, feature list; files named in errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from recsys import columns as C
from recsys.errors import BundleError
from recsys.manifest import SCHEMA_VERSION, read_manifest
from recsys.recommender import HybridRecommender, Request


@pytest.fixture()
def copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "b"))


def edit_manifest(bundle: Path, change) -> None:  # noqa: ANN001 - a one-off editor
    path = bundle / "manifest.json"
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


def test_manifest_records_what_a_report_needs(tiny_bundle: Path) -> None:
    m = read_manifest(tiny_bundle)
    assert m.schema_version == SCHEMA_VERSION and m.version
    assert len(m.data.fingerprint) == 64
    spans = m.data.spans
    # point in time: parts before the holdout, rankers on it; served parts on every event
    assert spans["holdout_parts"].end <= m.data.holdout_start <= spans["rankers"].start
    assert spans["served_parts"].end == spans["history"].end == spans["rankers"].end
    assert spans["served_parts"].events == spans["history"].events > spans["holdout_parts"].events
    for name in ("popularity", "als", "content"):
        assert set(m.models[name].valid_metrics) == {"ndcg@10", "recall@20"}
        assert f"holdout_{name}" in m.timings_seconds and f"refit_{name}" in m.timings_seconds
    assert m.models["als"].curve and m.models["content"].curve
    assert set(m.rankers) == {"for_you", "buy_again", "discover"}
    assert m.rankers["for_you"].queries > 0 and m.rankers["for_you"].importances
    assert m.config["holdout"] == 0.15 and m.config["refit"]
    assert "torch" in m.libraries and "implicit" in m.libraries
    assert all(len(v) == 64 for v in m.checksums.values())
    assert m.features[:2] == ["cf_score", "content_score"] and "n_sources" in m.features


def test_save_then_load_serves_the_same_lists(tiny_bundle: Path, tmp_path: Path) -> None:
    rec = HybridRecommender.load(tiny_bundle)
    rec.save(tmp_path / "again")
    again = HybridRecommender.load(tmp_path / "again")
    for user in [*rec.sample_users(5), None]:
        a = rec.recommend(Request(user_id=user, k=10))
        b = again.recommend(Request(user_id=user, k=10))
        assert [(i.item_id, i.reasons) for i in a.items] == \
            [(i.item_id, i.reasons) for i in b.items]


def test_flipped_byte_is_caught(copy: Path) -> None:
    target = copy / "models" / "als" / "mf.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"models/als/mf\.npz: checksum mismatch"):
        HybridRecommender.load(copy)


def test_missing_file_and_bad_schema(copy: Path) -> None:
    (copy / "rankers" / "for_you" / "ranker.txt").unlink()
    with pytest.raises(BundleError, match=r"rankers/for_you/ranker\.txt: missing"):
        HybridRecommender.load(copy)
    edit_manifest(copy, lambda m: m.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(BundleError, match="schema_version"):
        HybridRecommender.load(copy)


@pytest.mark.parametrize("change", [
    lambda m: m.update(checksumz=m.pop("checksums")),         # renamed: verification skipped?
    lambda m: m.update(checksums={}),
    lambda m: m["data"].pop("fingerprint"),
    lambda m: m.update(features="cf_score"),
])
def test_a_manifest_off_its_schema_is_refused(copy: Path, change) -> None:  # noqa: ANN001
    edit_manifest(copy, change)
    with pytest.raises(BundleError, match="manifest.json"):
        HybridRecommender.load(copy)


def test_an_unlisted_file_is_refused(copy: Path) -> None:
    """A part file without a checksum would be read unverified."""
    edit_manifest(copy, lambda m: m["checksums"].pop("rankers/for_you/ranker.txt"))
    with pytest.raises(BundleError, match="no checksum for rankers/for_you/ranker.txt"):
        HybridRecommender.load(copy)


def test_a_feature_list_this_code_does_not_compute_is_refused(copy: Path) -> None:
    """Serving refuses a bundle whose features differ, naming the difference (here the manifest
    and the ranker are edited consistently, checksum included, as a bundle from another version
    would be)."""
    from recsys.manifest import sha256_file

    meta = copy / "rankers" / "for_you" / "ranker.json"
    body = json.loads(meta.read_text())
    body["feature_names"] = ["trend_old" if f == "trend" else f for f in body["feature_names"]]
    meta.write_text(json.dumps(body))

    def change(m: dict) -> None:
        m["features"] = body["feature_names"]
        m["checksums"]["rankers/for_you/ranker.json"] = sha256_file(meta)
    edit_manifest(copy, change)
    with pytest.raises(BundleError, match=r"only in the bundle: \['trend_old'\]"):
        HybridRecommender.load(copy)


def test_a_part_of_another_kind_is_refused(copy: Path) -> None:
    """Each part's JSON says what it is; a file swapped in from another part is named."""
    from recsys.manifest import sha256_file

    target = copy / "history" / "history.json"
    shutil.copy(copy / "catalog" / "catalog.json", target)
    edit_manifest(copy, lambda m: m["checksums"].update({"history/history.json":
                                                         sha256_file(target)}))
    with pytest.raises(BundleError, match=r"history/history\.json: holds a 'catalog' part"):
        HybridRecommender.load(copy)


def test_cli_reports_a_broken_bundle_in_one_line(copy: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "hybrid" / "users.npz").write_bytes(b"garbage")
    users = tmp_path / "users.txt"
    users.write_text("u1\n")
    assert main(["recommend", "--bundle", str(copy), "--users", str(users),
                 "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "users.npz" in err and "checksum" in err and "\n" not in err


def test_serving_a_bundle_never_imports_torch(tiny_bundle: Path) -> None:
    """Loading and serving read the content model's arrays only; torch is for (re)training."""
    import subprocess
    import sys

    code = ("import sys; from recsys.threads import set_thread_policy; "
            "set_thread_policy('serve'); from recsys.recommender import HybridRecommender, "
            f"Request; rec = HybridRecommender.load({str(tiny_bundle)!r}); "
            "rec.recommend(Request(user_id=rec.sample_users(1)[0], k=5)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_a_purchase_at_the_last_instant_shows_in_buy_again(tiny_shop: Path,
                                                            tiny_bundle: Path) -> None:
    # the served bundle learns from every event: the data's last purchase is in buy-again
    events = pd.read_parquet(tiny_shop / "events.parquet")
    bought = events[events[C.EVENT_TYPE] == C.PURCHASE]
    last = bought.loc[bought[C.TIMESTAMP].idxmax()]
    assert last[C.TIMESTAMP] == events[C.TIMESTAMP].max() or (
        events[C.TIMESTAMP] > last[C.TIMESTAMP]).sum() < 50, "fixture: a purchase near the end"
    rec = HybridRecommender.load(tiny_bundle)
    again = rec.recommend(Request(user_id=str(last[C.USER_ID]), k=100, surface="buy_again"))
    assert str(last[C.ITEM_ID]) in [item.item_id for item in again.items]


def test_a_small_shop_adds_earlier_ranker_windows(tiny_shop: Path, tiny_bundle: Path) -> None:
    # the tiny shop's holdout asks far fewer than ranker_min_queries returning shoppers, so the
    # rankers also learn from earlier windows, each with its own first-stage fit
    from recsys.fit import holdout_start, returning_shoppers

    events = pd.read_parquet(tiny_shop / "events.parquet")
    events[C.TIMESTAMP] = pd.to_datetime(events[C.TIMESTAMP], utc=True)
    start = holdout_start(events, 0.15)
    asked = returning_shoppers(events, start, events[C.TIMESTAMP].max())
    after = events[events[C.TIMESTAMP] >= start][C.USER_ID].unique()
    before = set(events[events[C.TIMESTAMP] < start][C.USER_ID])
    assert asked == sum(u in before for u in after) and 0 < asked < 4000
    m = read_manifest(tiny_bundle)
    assert "window2_content" in m.timings_seconds
