"""One save/load contract for every fitted part (models, catalog, history, sources, indexes).

A part named ``name`` writes ``name.json`` (its ``kind``, ``format_version`` and parameters) and,
when it has arrays, ``name.npz`` (no pickle); parts with a native format (LightGBM text, a FAISS
index, a torch ``state_dict``) write that file beside them. ``save(directory)`` returns the file
names it wrote, so the bundle can checksum them; ``load(directory)`` is a classmethod.

Every way a part can fail to load (a missing file, JSON that does not parse, another kind or
format version, a missing array, a file a library refuses) is a :class:`~recsys.errors.BundleError`
that names the file, so a damaged bundle is never served and the operator knows what to replace.

>>> # files = [write_meta(d, "copurchase", kind="copurchase", version=1, config={...}),
>>> #          write_arrays(d, "copurchase", {"data": ...})]
>>> # meta = read_meta(d, "copurchase", kind="copurchase", version=1)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ValidationError

from recsys.configfile import describe
from recsys.errors import BundleError, RecsysError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Persistent(Protocol):
    """What every fitted part implements."""

    def save(self, directory: Path) -> list[str]: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn any failure while reading ``path`` into a BundleError naming it."""
    try:
        yield
    except RecsysError:
        raise
    except FileNotFoundError:
        raise BundleError(f"{path}: missing {what} file") from None
    except Exception as exc:  # a library refusing a damaged file: name the file
        raise BundleError(f"{path}: cannot read {what} ({type(exc).__name__}: {exc})") from exc


def read_with(path: Path, what: str, reader: Callable[[Path], T]) -> T:
    """``reader(path)`` with failures named: for native formats (LightGBM, FAISS, torch)."""
    with reading(path, what):
        if not path.is_file():
            raise BundleError(f"{path}: missing {what} file")
        return reader(path)


def write_meta(directory: Path, name: str, *, kind: str, version: int, **fields: Any) -> str:
    """Write ``name.json``; returns its file name."""
    body = {"kind": kind, "format_version": version, **fields}
    (directory / f"{name}.json").write_text(json.dumps(body, indent=2, sort_keys=True,
                                                       default=str) + "\n")
    return f"{name}.json"


def read_meta(directory: Path, name: str, *, kind: str, version: int) -> dict[str, Any]:
    """Read ``name.json`` and check it holds a part of ``kind`` at ``version``."""
    path = directory / f"{name}.json"
    with reading(path, kind):
        meta = json.loads(path.read_text())
    if not isinstance(meta, dict):
        raise BundleError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    if meta.get("kind") != kind:
        raise BundleError(f"{path}: holds a {meta.get('kind')!r} part (expected {kind!r})")
    if meta.get("format_version") != version:
        raise BundleError(f"{path}: format_version {meta.get('format_version')!r} "
                          f"(expected {version}); retrain with this version of recsys")
    return meta


def write_arrays(directory: Path, name: str, arrays: Mapping[str, np.ndarray]) -> str:
    """Write ``name.npz`` (no pickle); returns its file name."""
    np.savez(directory / f"{name}.npz", allow_pickle=False, **arrays)
    return f"{name}.npz"


def read_arrays(directory: Path, name: str, required: Iterable[str]) -> dict[str, np.ndarray]:
    """Every array of ``name.npz``; a missing ``required`` array is a BundleError."""
    path = directory / f"{name}.npz"
    with reading(path, f"{name} arrays"):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise BundleError(f"{path}: missing array(s) {', '.join(missing)}")
    return arrays


def field(meta: Mapping[str, Any], key: str, path: Path) -> Any:
    """``meta[key]``, or a BundleError naming the file."""
    if key not in meta:
        raise BundleError(f"{path}: missing field {key!r}")
    return meta[key]


def read_config(meta: Mapping[str, Any], path: Path, model: type[M]) -> M:
    """The part's saved ``config``, validated against ``model`` (a BundleError on mismatch)."""
    try:
        return model.model_validate(field(meta, "config", path))
    except ValidationError as exc:
        raise BundleError(describe(exc, f"{path} (config)")) from None


def write_csr(directory: Path, name: str, matrix: sp.csr_matrix) -> str:
    """A sparse matrix as ``name.npz`` (its CSR arrays, no pickle)."""
    return write_arrays(directory, name, {"data": matrix.data, "indices": matrix.indices,
                                          "indptr": matrix.indptr,
                                          "shape": np.array(matrix.shape)})


def read_csr(directory: Path, name: str) -> sp.csr_matrix:
    """What :func:`write_csr` wrote, checked for consistency (a BundleError names the file)."""
    z = read_arrays(directory, name, ("data", "indices", "indptr", "shape"))
    with reading(directory / f"{name}.npz", f"{name} matrix"):
        matrix = sp.csr_matrix((z["data"], z["indices"], z["indptr"]),
                               shape=tuple(int(v) for v in z["shape"]))
        matrix.check_format()
    return matrix
