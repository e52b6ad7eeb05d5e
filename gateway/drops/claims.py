"""Claim ids: the names of claimed drops in the work area, `<token>~d~<drop>` for folder drops and
`<token>~f~<drop>` for flat drops. The intake makes them; the sender and the operator read them back."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.contract.sidecar import FOLDER_SIDECAR_NAME

_counter = itertools.count()


@dataclass(frozen=True)
class ClaimedDrop:
    claim_id: str
    kind: str  # "folder" | "flat"
    name: str
    folder: Path  # the claim's folder in the work area

    @property
    def sidecar_name(self) -> str:
        return FOLDER_SIDECAR_NAME if self.kind == "folder" else f"{self.name}.xml"

    @property
    def sidecar_path(self) -> Path:
        return self.folder / self.sidecar_name


def new_claim_id(kind: str, name: str) -> str:
    token = f"{time.time_ns():x}{next(_counter) % 4096:03x}{secrets.token_hex(2)}"
    return f"{token}~{'d' if kind == 'folder' else 'f'}~{name}"


def parse_claim_id(claim_id: str, work: Path) -> ClaimedDrop | None:
    parts = claim_id.split("~", 2)
    if len(parts) != 3 or parts[1] not in ("d", "f"):
        return None
    return ClaimedDrop(claim_id, "folder" if parts[1] == "d" else "flat", parts[2], work / claim_id)


__all__ = ["ClaimedDrop", "new_claim_id", "parse_claim_id"]
