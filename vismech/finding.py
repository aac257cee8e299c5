"""Findings: what a method discovered, saved as safetensors (tensors) + JSON (everything else). Never pickle."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import VismechError
from .io import atomic_directory

TENSORS_FILE = "tensors.safetensors"
META_FILE = "finding.json"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


@dataclass
class Finding:
    method: str
    task: str
    subject_id: str
    subject_digest: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """Content hash: equal findings have equal digests, whatever the order they were built in."""
        h = hashlib.sha256(json.dumps(self._header(), sort_keys=True).encode())
        for name in sorted(self.tensors):
            t = self.tensors[name].detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def _header(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "method": self.method, "task": self.task,
                "subject_id": self.subject_id, "subject_digest": self.subject_digest,
                "config": self.config, "meta": self.meta}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_directory(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}, str(tmp / TENSORS_FILE))
            (tmp / META_FILE).write_text(json.dumps({**self._header(), "digest": self.digest()}, indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Finding":
        path = Path(path)
        if path.is_file() and path.suffix in PICKLE_SUFFIXES:
            raise VismechError(f"refusing to load '{path}': pickle files can run code; a finding is a folder "
                               f"with {TENSORS_FILE} and {META_FILE}")
        meta_path, tensor_path = path / META_FILE, path / TENSORS_FILE
        if not meta_path.is_file() or not tensor_path.is_file():
            raise VismechError(f"'{path}' is not a finding: expected {META_FILE} and {TENSORS_FILE} inside it")
        try:
            header = json.loads(meta_path.read_text())
            tensors = load_file(str(tensor_path))
        except (json.JSONDecodeError, SafetensorError, OSError) as exc:
            raise VismechError(f"finding '{path}' is corrupt: {exc}") from None
        if header.get("format_version") != FORMAT_VERSION:
            raise VismechError(f"finding '{path}' has format_version {header.get('format_version')!r}; "
                               f"this vismech reads {FORMAT_VERSION}")
        finding = cls(header["method"], header["task"], header["subject_id"], header["subject_digest"],
                      header["config"], tensors, header.get("meta", {}))
        if header.get("digest") != finding.digest():
            raise VismechError(f"finding '{path}' does not match its recorded digest: the files were changed")
        return finding
