"""The experiment readout over HTTP and from the CLI when the store holds rows no client of the
API could have sent (another writer, an import, a SQL console): a price of 1e308, an infinite
price, a price and a quantity over the API's bounds, a NaN price. The readout answers, leaves
the unusable rows out and counts them (``data_quality``); and its lift p-values come raw and
Holm-adjusted side by side."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from statsmodels.stats.multitest import multipletests

from pipelines.cli import main
from serving.app import create_app
from tests.serving.conftest import EXPERIMENT, READ_KEY, WRITE_KEY

NAME = EXPERIMENT["name"]
T = "2026-01-20T12:00:00Z"
PRICE = 12.5


def purchase(event_id: str, user: str, item: str, request_id: str, **extra: Any
             ) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "item_id": item, "event_type": "purchase",
            "timestamp": T, "request_id": request_id, "position": 0, **extra}


def no_nan_tokens(text: str) -> Any:
    """``text`` as JSON, failing on NaN / Infinity (not JSON, and what a broken sum gives)."""
    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in the readout")
    return json.loads(text, parse_constant=refuse)


def serving_config(path: Path, bundle: Path, store: str) -> Path:
    variants = "".join(f'[[experiments.variants]]\nname = "{v["name"]}"\nweight = {v["weight"]}'
                       f'\npipeline = "{v["pipeline"]}"\n' for v in EXPERIMENT["variants"])
    path.write_text(f'event_store = "{store}"\n[bundles]\ndefault = "{bundle}"\n'
                    f'[[experiments]]\nname = "{NAME}"\nsalt = "{EXPERIMENT["salt"]}"\n'
                    f'traffic = {EXPERIMENT["traffic"]}\n{variants}')
    return path


def test_unusable_stored_rows_are_skipped_and_counted(
        make_settings: Any, store_location: str, serving_bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(event_store=store_location, privacy={"audit_secret": "t"})
    with TestClient(create_app(settings), headers={"X-API-Key": WRITE_KEY}) as client:
        served = []
        for n in range(40):
            body = client.post("/v1/recommendations",
                               json={"user_id": f"shopper-{n}", "k": 3}).json()
            served.append((f"shopper-{n}", body["items"][0]["item_id"], body["request_id"]))
        good = [{"event_id": f"imp-{u}", "user_id": u, "item_id": i, "event_type": "impression",
                 "timestamp": T, "request_id": r, "position": 0} for u, i, r in served]
        good += [purchase(f"buy-{u}", u, i, r, price=PRICE, quantity=2)
                 for u, i, r in served[::4]]
        assert client.post("/v1/events", json={"events": good}).status_code == 202
        # the API refuses all of these (finite, bounded numbers); the store's own checks
        # (price >= 0, quantity >= 1) let them through
        store = client.app.state.serving.store  # type: ignore[attr-defined]
        (u0, i0, r0), (u1, i1, r1), (u2, i2, r2), (u3, i3, r3), (u5, i5, r5) = served[:4] + [
            served[5]]
        bad = [purchase("bad-1e308", u0, i0, r0, price=1e308, quantity=2),   # sum overflows
               purchase("bad-inf", u1, i1, r1, price=math.inf),
               purchase("bad-1e10", u2, i2, r2, price=1e10),          # finite, over the bound
               purchase("bad-qty", u3, i3, r3, price=PRICE, quantity=2_000_000_000)]
        no_price = purchase("nan-price", u5, i5, r5, price=math.nan)
        store.add_events([*bad, no_price])

        r = client.get(f"/v1/experiments/{NAME}/results", headers={"X-API-Key": READ_KEY})
        assert r.status_code == 200, r.text
        body = no_nan_tokens(r.text)
    quality = body["data_quality"]
    assert quality == {"rows_read": len(good) + len(bad) + 1, "rows_skipped": len(bad),
                       "skipped": {"price not in 0..1e+09": 3,
                                   "quantity not in 1..1,000,000": 1}}
    assert any(f"{len(bad)} stored event(s) skipped as unusable" in w for w in body["warnings"])
    # a NaN price cannot be told from a missing one (SQLite stores it as NULL): it is a purchase
    # without a price, counted as 0 revenue and said so
    assert any("1 attributed purchases have no price" in w for w in body["warnings"])
    summary = body["summary"]
    assert sum(v["revenue"] for v in summary.values()) == pytest.approx(
        PRICE * 2 * len(served[::4]))
    assert sum(v["purchases"] for v in summary.values()) == len(served[::4]) + 1
    lift = body["lift"]
    assert lift and all("p_value" in row and "p_adjusted" in row for row in lift)
    tested = [row for row in lift if row["p_value"] is not None]   # None: no variance, no test
    assert len(tested) >= 2 and all(row["p_adjusted"] is None for row in lift
                                    if row["p_value"] is None)
    assert [row["p_adjusted"] for row in tested] == pytest.approx(list(multipletests(
        [row["p_value"] for row in tested], method="holm")[1]), rel=1e-12)

    # recsys experiment report reads the same store
    out = tmp_path / "report"
    config = serving_config(tmp_path / "serving.toml", serving_bundle, store_location)
    capsys.readouterr()
    assert main(["experiment", "report", NAME, "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(bad)} stored event(s) skipped as unusable" in printed
    saved = no_nan_tokens((out / "readout.json").read_text())
    assert saved["data_quality"] == quality
    assert saved["summary"] == summary
    assert f"{len(bad)} stored event(s) skipped as unusable" in (out / "report.html").read_text()
