"""A trust store is shared by the sender's and the receiver's threads: validations at the same moment must not
trip over each other (asn1crypto parses lazily and its objects are not safe to share between threads; a kill -9
run once logged a traceback from inside its hashing)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from gateway.devcerts import create_dev_pki, dev_identity
from gateway.trust.store import Purpose, TrustStore

A, B = "991825827", "910077473"


def test_many_threads_validating_at_once_on_fresh_stores_all_succeed(tmp_path: Path) -> None:
    pki = create_dev_pki(tmp_path / "pki", {A: "A", B: "B"})
    leaves = [dev_identity(pki, A).certificate, dev_identity(pki, B).certificate]
    failures: list[BaseException] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: the race shows on every run, not once a week
    try:
        _rounds(pki.trust_bundle, leaves, failures)
    finally:
        sys.setswitchinterval(switch)
    assert not failures, f"{len(failures)} validations failed, the first: {failures[0]!r}"


def _rounds(bundle: Path, leaves: list, failures: list[BaseException]) -> None:
    for _ in range(30):
        # A fresh store each round: its anchors not parsed yet, so every thread meets them for the first time.
        store = TrustStore.from_pem_files([bundle])
        start = threading.Barrier(8)

        def validate(store: TrustStore = store, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                for certificate in leaves * 3:
                    store.verify(certificate, purpose=Purpose.ENCRYPTION, role="the certificate")
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=validate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
