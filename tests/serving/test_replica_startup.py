"""Which bundle a process serves at start-up when the store's control log has reloads: the
newest reload made against the same configured path (so a new replica joins the fleet), but
never over a configuration that names another path (a deliberate deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.event_store import RELOAD, open_store
from tests.serving.conftest import ADMIN_KEY


def served_version(settings: Any) -> str:
    with TestClient(create_app(settings)) as c:
        return str(c.get("/readyz").json()["bundles"]["default"])


def test_startup_follows_the_control_log(make_settings: Any, serving_bundle: Path,
                                         second_bundle: Path, tmp_path: Path) -> None:
    settings = make_settings()
    with TestClient(create_app(settings)) as c:
        first = c.get("/readyz").json()["bundles"]["default"]
        r = c.post("/v1/admin/reload", headers={"X-API-Key": ADMIN_KEY},
                   json={"bundle": "default", "path": str(second_bundle)})
        assert r.status_code == 200 and r.json()["control_id"] == 1
        second = r.json()["model_version"]
    assert served_version(settings) == second             # a later process joins the fleet

    # the same bundle directory named another way (here a symlink) is the same configured path
    link = tmp_path / "current"
    link.symlink_to(serving_bundle)
    assert served_version(make_settings(bundles={"default": str(link)})) == second

    # configured with another bundle: deployed on purpose, the configuration wins
    assert served_version(make_settings(bundles={"default": str(second_bundle)})) == second
    with open_store(settings.event_store) as store:
        store.add_control(RELOAD, "default", {"path": str(serving_bundle), "version": first,
                                              "configured": str(second_bundle.resolve())})
    assert served_version(make_settings(bundles={"default": str(second_bundle)})) == first

    # a recorded directory that no longer holds the recorded version is not served
    with open_store(settings.event_store) as store:
        store.add_control(RELOAD, "default", {
            "path": str(second_bundle), "version": "20000101T000000Z-00000000",
            "configured": str(serving_bundle.resolve())})
    assert served_version(settings) == first
