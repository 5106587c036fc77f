"""The export folder's format: ``export.json`` (the commit point) beside its graph files.

Both sides use this module: ``vecmetric.encoders.export`` writes the folder and the runtime
reads it, without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._cache import user_cache_dir
from .._fsutil import read_tagged_json
from ..errors import ExportError

EXPORT_FILE = "export.json"
EXPORT_FORMAT = "vecmetric-export"
FORMAT_VERSION = 1
IMAGE_TOWER, TEXT_TOWER = "image", "text"
STATUS_OK, STATUS_FAILED = "ok", "failed"


def export_dir(fingerprint: str) -> Path:
    """The per-user cache folder for a model's export (not created here).

    Characters that are not safe in a file name on every platform become ``_``.
    """
    return user_cache_dir("exports", re.sub(r"[^A-Za-z0-9._-]", "_", fingerprint))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(data: dict[str, Any]) -> str:
    """A hash of ``export.json``'s own fields: a flipped byte in its preprocessing or metric is caught too."""
    return sha256_hex(json.dumps({k: v for k, v in data.items() if k != "digest"}, sort_keys=True).encode())


@dataclass(frozen=True)
class ExportInfo:
    """What ``export.json`` says about an export folder.

    Attributes:
        folder: the export folder.
        status: ``ok`` or ``failed``; a failed export records its ``reason`` so it is not retried.
        spec, fingerprint, dim, metric, architecture, preprocess: the encoder, as ``Encoder.describe()``.
        towers: ``{"image": {...}, "text": {...}}``, each with its ``file``, ``sha256``, ``size``,
            ``input``, ``output``, ``exporter`` (``dynamo`` or ``torchscript``), ``opset`` and ``check``.
        tokenizer: for a text tower, the vocabulary ``file`` (with ``sha256``, ``size``),
            ``context_length`` and ``clean`` mode; else None.
        text_reason: why a model with a text tower was exported without it.
        benchmark: onnxruntime against torch images/s at export time, on this machine.
        versions: torch, onnx, onnxscript, onnxruntime and vecmetric versions used.
    """

    folder: Path
    status: str
    spec: str
    fingerprint: str
    dim: int | None = None
    metric: str | None = None
    architecture: dict[str, Any] | None = None
    preprocess: dict[str, Any] | None = None
    towers: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokenizer: dict[str, Any] | None = None
    reason: str | None = None
    text_reason: str | None = None
    benchmark: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def onnxruntime_faster(self) -> bool | None:
        """Whether onnxruntime embedded images faster than torch at export time (None: not measured)."""
        bench = self.benchmark or {}
        ort, torch = bench.get("onnxruntime_images_per_s"), bench.get("torch_images_per_s")
        return None if not (ort and torch) else ort > torch

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["folder"]
        data = {"format": EXPORT_FORMAT, "format_version": FORMAT_VERSION, **data}
        return {**data, "digest": _digest(data)}

    @classmethod
    def from_dict(cls, folder: str | os.PathLike, data: dict[str, Any]) -> "ExportInfo":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "folder"}
        return cls(folder=Path(folder), **known)


def read_export_info(folder: str | os.PathLike) -> ExportInfo:
    """Read a folder's ``export.json``.

    Raises:
        ExportError: no export there, or its ``export.json`` is unreadable, of another format,
            from a newer vecmetric, or lacks required fields.
    """
    path = Path(folder) / EXPORT_FILE
    if not path.is_file():
        raise ExportError(f"no ONNX export in {folder} (no {EXPORT_FILE})")
    data = read_tagged_json(path, EXPORT_FORMAT, ExportError, "ONNX export description")
    if data.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path} has format version {data.get('format_version')!r}; this vecmetric reads {FORMAT_VERSION}")
    if data.get("digest") != _digest(data):
        raise ExportError(f"{path} is damaged: its digest does not match its content", hint="delete the folder and export again")
    try:
        info = ExportInfo.from_dict(folder, data)
    except TypeError as exc:
        raise ExportError(f"{path} is damaged: {exc}") from None
    if info.status not in (STATUS_OK, STATUS_FAILED) or not isinstance(info.towers, dict):
        raise ExportError(f"{path} is damaged: status {info.status!r}")
    return info


def _entry_path(folder: Path, entry: dict[str, Any]) -> Path:
    name = str(entry.get("file", ""))
    if name in ("", ".", "..") or Path(name).name != name:
        raise ExportError(f"export in {folder} names an invalid file {name!r}", hint="delete the folder and export again")
    return folder / name


def read_verified(folder: Path, entry: dict[str, Any]) -> bytes:
    """The bytes of one file listed in ``export.json``, checked against its recorded size and sha256.

    The bytes returned are the bytes hashed, so what runs is what was checked.

    Raises:
        ExportError: the file is missing, outside the folder, or its size or hash differ.
    """
    path = _entry_path(folder, entry)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) != entry.get("size") or sha256_hex(data) != entry.get("sha256"):
        raise ExportError(
            f"{path} is damaged: its size or sha256 differ from {EXPORT_FILE}'s",
            hint="delete the folder and export again",
        )
    return data


def check_sizes(info: ExportInfo) -> None:
    """Cheap first check of every listed file: present, with the recorded size (hashes come when read).

    Raises:
        ExportError: a file is missing or has another size.
    """
    entries = [*info.towers.values(), *([info.tokenizer] if info.tokenizer else [])]
    for entry in entries:
        path = _entry_path(info.folder, entry)
        try:
            size = path.stat().st_size
        except OSError:
            raise ExportError(f"export in {info.folder} lacks {entry.get('file')!r}", hint="delete the folder and export again") from None
        if size != entry.get("size"):
            raise ExportError(
                f"{path} is damaged: {size} bytes where {EXPORT_FILE} records {entry.get('size')}",
                hint="delete the folder and export again",
            )


def copy_export(source: str | os.PathLike, target: str | os.PathLike) -> ExportInfo:
    """Copy a usable export to another folder (a store from the per-user cache, or back), checking every byte.

    ``export.json`` is removed from ``target`` first and written last, so a copy cut short is never taken
    for a complete one.

    Returns:
        The copy's ``ExportInfo``.

    Raises:
        ExportError: the source is not a usable export, or a file of it is damaged.
        OSError: ``target`` cannot be written.
    """
    from .._fsutil import atomic_write_bytes

    info = read_export_info(source)
    if not info.ok:
        raise ExportError(f"the export in {source} failed: {info.reason}")
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    (target / EXPORT_FILE).unlink(missing_ok=True)
    for entry in [*info.towers.values(), *([info.tokenizer] if info.tokenizer else [])]:
        atomic_write_bytes(_entry_path(target, entry), read_verified(info.folder, entry))
    atomic_write_bytes(target / EXPORT_FILE, (Path(source) / EXPORT_FILE).read_bytes())
    return read_export_info(target)
