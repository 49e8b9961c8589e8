"""docs/api.md's ``curl`` examples, read from the file and sent in order to an app serving what
``recsys demo`` serves: a bundle trained on the demo's synthetic shop (its defaults, so its item
and user ids), the demo's serving config, and keys from the environment as the demo sets them.
Each must answer the status the docs' endpoint table gives, name no unknown id or category, and
answer the keys of the JSON example printed right after it."""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "api.md"
KEY_ENV = {f"RECSYS_{role.upper()}_KEY": f"docs-{role}-key"
           for role in ("write", "read", "dashboard", "admin")}
CURL_FLAGS = {"-s", "--silent"}


# ---------------------------------------------------------------------- reading the docs
def curl_commands(block: str) -> list[list[str]]:
    """The ``curl`` commands of a bash block as argument lists (shell quoting, ``\\``
    continuations and ``#`` comments as a shell reads them)."""
    commands, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if pending.rstrip().endswith("\\"):
            continue
        try:
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:      # a quote still open: the command goes on
            continue
        if words and words[0] == "curl":
            commands.append(words)
        pending = ""
    assert not pending, f"unterminated command in docs/api.md: {pending!r}"
    return commands


def examples(text: str) -> list[tuple[list[str], dict[str, Any] | None]]:
    """Every curl command in the docs' bash blocks, with the JSON example that directly follows
    its block (if any) for the last command of the block."""
    out: list[tuple[list[str], dict[str, Any] | None]] = []
    for m in re.finditer(r"```bash\n(.*?)```(\s*```json\n(.*?)```)?", text, re.S):
        commands = curl_commands(m.group(1))
        answer = json.loads(m.group(3)) if m.group(3) else None
        out += [(c, answer if i == len(commands) - 1 else None) for i, c in enumerate(commands)]
    return out


def documented_statuses(text: str) -> list[tuple[str, re.Pattern[str], int]]:
    """(method, path pattern, success status) per row of the docs' endpoint table; a row ending
    in ``...`` stands for every path under it, and a more specific row wins over it."""
    rows = []
    for m in re.finditer(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^` ]*)` \|.*\| ([^|]+) \|$", text,
                         re.M):
        path = m.group(2).split("?")[0]                  # "/v1/items/{item_id}/similar?k=10"
        template = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))   # {name}: one segment
        template = template.replace(re.escape("..."), ".+")    # "/v1/dashboard/...": the rest
        status = re.match(r"\s*(\d{3})", m.group(3))
        assert status, f"no status in the endpoint table row {m.group(0)!r}"
        rows.append((m.group(1), re.compile(template + "$"), int(status.group(1))))
    return rows


def expand(value: str) -> str:
    """``$NAME`` / ``${NAME}`` from the environment, as the shell would (a missing one fails)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: os.environ[m.group(1)], value)


def as_request(words: list[str]) -> tuple[str, str, dict[str, str], str | None]:
    """method, path with query, headers and body of a curl command."""
    method, url, body, headers = None, None, None, {}
    args = iter(words[1:])
    for word in args:
        if word in CURL_FLAGS:
            continue
        if word in ("-X", "--request"):
            method = next(args)
        elif word in ("-H", "--header"):
            name, _, value = next(args).partition(":")
            headers[name.strip()] = expand(value.strip())
        elif word in ("-d", "--data", "--data-raw"):
            body = next(args)
        elif word.startswith("-"):
            raise AssertionError(f"curl option {word!r} is not understood by this test")
        else:
            url = word
    assert url is not None, words
    parts = urlsplit(url if "://" in url else f"http://{url}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return method or ("POST" if body is not None else "GET"), path, headers, body


def test_the_docs_have_examples_for_the_main_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser finds what a reader sees (so the test below cannot pass on nothing)."""
    for name, value in KEY_ENV.items():
        monkeypatch.setenv(name, value)
    found = {(m, p.split("?")[0]) for m, p, _, _ in
             (as_request(c) for c, _ in examples(DOCS.read_text()))}
    assert {("POST", "/v1/recommendations"), ("POST", "/v1/events"), ("GET", "/v1/experiments"),
            ("POST", "/v1/admin/reload")} <= found
    assert len(documented_statuses(DOCS.read_text())) >= 11


# ---------------------------------------------------------------------- the demo's server
@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the demo's shop (``recsys demo``'s defaults: its catalog and ids), trained
    with the small serving-test config to stay fast."""
    from pipelines.demo import run_demo
    from pipelines.train import train
    from recsys.data.synthetic import ShopConfig, generate_shop
    from tests.serving.conftest import _small_config

    demo = {name: p.default for name, p in inspect.signature(run_demo).parameters.items()
            if name in ("users", "items", "days", "seed")}
    shop = tmp_path_factory.mktemp("demo_shop")
    generate_shop(ShopConfig(**demo)).save(shop)
    out = tmp_path_factory.mktemp("demo_bundle") / "bundle"
    train(shop, out, _small_config(seed=1), quiet=True)
    return out


@pytest.fixture
def demo_client(demo_bundle: Path, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The demo's server (pipelines.demo.serve_demo): the shipped serving config with the bundle
    and a fresh store, keys from the environment. The working directory holds
    ``runs/new/bundle`` (the reload example's path; relative paths are the server's)."""
    from pipelines.demo import SERVING_CONFIG
    from serving.settings import load_settings

    for name, value in KEY_ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "runs" / "new").mkdir(parents=True)
    (tmp_path / "runs" / "new" / "bundle").symlink_to(demo_bundle, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(SERVING_CONFIG, bundle=demo_bundle).model_copy(
        update={"event_store": tmp_path / "events.db"})
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_curl_example_answers_as_documented(demo_client: TestClient) -> None:
    text = DOCS.read_text()
    statuses = documented_statuses(text)
    for words, documented_answer in examples(text):
        method, path, headers, body = as_request(words)
        rows = [(pattern.pattern.endswith(".+$"), s) for m, pattern, s in statuses
                if m == method and pattern.match(path.split("?")[0])]
        route = [s for wildcard, s in rows if not wildcard] or [s for _, s in rows]
        assert len(route) == 1, f"{method} {path}: not one row in the endpoint table ({rows})"
        r = demo_client.request(method, path, headers=headers,
                                content=None if body is None else body.encode())
        shown = shlex.join(words)
        assert r.status_code == route[0], f"{shown}\n-> {r.status_code} {r.text}"
        answer = r.json() if r.headers["content-type"] == "application/json" else None
        if isinstance(answer, dict) and "items" in answer:
            # the ids and categories of the examples exist in the demo's catalog: a list that
            # ignored an unknown id or category says so in its warnings
            assert answer["items"] and answer.get("warnings", []) == [], f"{shown}\n-> {answer}"
        if isinstance(answer, dict):
            assert answer.get("rejected", 0) == 0, f"{shown}\n-> {answer}"
        if documented_answer is not None:
            assert isinstance(answer, dict) and set(answer) == set(documented_answer), (
                f"{shown}\n-> keys {sorted(answer or {})}, documented "
                f"{sorted(documented_answer)}")
