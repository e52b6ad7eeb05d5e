"""asn1crypto's classes made ready once, at import, before any thread uses them.

asn1crypto sets a class up the first time one of its values is made: it builds the class's maps (an OID's name to
its number, a field's name to its place) into an empty dict it has already put on the class. A second thread that
comes meanwhile finds that dict half filled and fails on a good value: a node restarted under load, its senders
encrypting at once, logged `invalid literal for int() with base 10: 'aes256_cbc'` while building a CMS envelope.
Every class of the modules we use is set up here, in the one thread that imports this module, after
pyhanko-certvalidator has added its extensions to asn1crypto's maps (a map set up before would lack them).
"""

from __future__ import annotations

import pyhanko_certvalidator.asn1_types  # noqa: F401 - it adds to asn1crypto's maps: first
from asn1crypto import algos, cms, core, crl, keys, ocsp, pem, tsp, x509  # noqa: F401 - their classes, set up below


def _every_class() -> set[type]:
    found: set[type] = set()
    stack = [core.Asn1Value]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                stack.append(sub)
    return found


def set_up_every_class() -> int:
    """Set up every asn1crypto class loaded so far (making a value of each does it); returns how many."""
    classes = _every_class()
    for cls in classes:
        try:
            cls()
        except Exception:  # noqa: S112 - a class that needs arguments was set up before it refused them
            continue
    return len(classes)


set_up_every_class()
