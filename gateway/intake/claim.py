"""Claim a drop by one atomic rename into the work area, so it is taken exactly once.

Work-area names are `<token>~d~<drop>` for folder drops and `<token>~f~<drop>` for flat drops.
A flat drop is claimed by renaming its sidecar (the commit marker) to `<claim>.xml`; its documents
follow into the folder `<claim>/`, and the sidecar last. Each step can be repeated after a crash.
The names themselves (`gateway.drops.claims`) are shared with the sender and the operator.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.drops.claims import ClaimedDrop, new_claim_id, parse_claim_id
from gateway.fsio import fsync_dir
from gateway.intake.outbox import Candidate
from gateway.intake.peek import read_listed_files


class Claimer:
    def __init__(self, outbox: Path, work: Path) -> None:
        self.outbox = outbox
        self.work = work

    def claim(self, candidate: Candidate, durable: bool = True) -> ClaimedDrop | None:
        """Take the drop; None when it is gone (taken by someone else or removed by its writer).

        With `durable=False` the caller must call `sync()` before journalling the claim, so that
        the renames of a whole batch of claims are made durable with one fsync of each folder.
        """
        claim_id = new_claim_id(candidate.kind, candidate.name)
        source = self.outbox / candidate.entry
        target = self.work / (claim_id if candidate.kind == "folder" else f"{claim_id}.xml")
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None
        if durable:
            self.sync()
        claimed = parse_claim_id(claim_id, self.work)
        assert claimed is not None
        if candidate.kind == "flat":
            self.finish_flat(claimed, candidate.documents)
        return claimed

    def sync(self) -> None:
        """Make every claim rename so far durable: in the work area and out of the outbox."""
        fsync_dir(self.work)
        fsync_dir(self.outbox)

    def finish_flat(self, claimed: ClaimedDrop, documents: tuple[str, ...] | None = None) -> None:
        """Move a flat drop's documents after its claimed sidecar, then the sidecar into place."""
        pending_sidecar = self.work / f"{claimed.claim_id}.xml"
        if documents is None:
            listed = read_listed_files(pending_sidecar) if pending_sidecar.exists() else None
            documents = tuple(file for file, _ in listed or ())
        claimed.folder.mkdir(exist_ok=True)
        for document in documents:
            source = self.outbox / document
            target = claimed.folder / document
            if "/" in document or document in ("", ".", "..") or os.path.lexists(target):
                continue
            try:
                if stat.S_ISDIR(os.lstat(source).st_mode):
                    continue  # a flat sidecar names files only: a folder is a drop of its own
                os.rename(source, target)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
        if pending_sidecar.exists():
            os.rename(pending_sidecar, claimed.sidecar_path)
        fsync_dir(claimed.folder)
        fsync_dir(self.work)
        fsync_dir(self.outbox)

    def claimed_drops(self) -> list[ClaimedDrop]:
        """Every claim in the work area, finishing flat claims a crash interrupted."""
        claims: list[ClaimedDrop] = []
        for entry in sorted(os.listdir(self.work)):
            if entry.endswith(".xml"):
                claimed = parse_claim_id(entry[: -len(".xml")], self.work)
                if claimed is not None:
                    self.finish_flat(claimed)
                    claims.append(claimed)
            elif (self.work / entry).is_dir():
                claimed = parse_claim_id(entry, self.work)
                if claimed is not None and claimed not in claims:
                    claims.append(claimed)
        return sorted(set(claims), key=lambda c: c.claim_id)
