"""asn1crypto sets a class up (its name-to-OID and field maps) the first time a value of it is made, into a dict it
has put on the class empty; a thread that comes meanwhile reads it half filled. A node restarted under load logged
`invalid literal for int() with base 10: 'aes256_cbc'` from two senders building CMS envelopes at once. Every class
is set up when the gateway's crypto is imported, in a fresh process, before a thread could race for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FRESH_PROCESS_CHECK = textwrap.dedent("""
    import gateway.formats.cms, gateway.trust.store  # each imports gateway/trust/asn1_classes.py
    from asn1crypto import algos, core

    def every(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from every(sub)

    classes = set(every(core.Asn1Value))
    not_set_up = [cls for cls in classes if cls not in core._SETUP_CLASSES and cls.__init__ is core.Asn1Value.__init__]
    half = [cls for cls in classes if getattr(cls, "_map", None) and cls._reverse_map is not None
            and len(cls._reverse_map) < len(set(cls._map.values()))]
    assert algos.EncryptionAlgorithmId in core._SETUP_CLASSES
    assert algos.EncryptionAlgorithmId._reverse_map["aes256_cbc"] == "2.16.840.1.101.3.4.1.42"
    print(len(classes), len(not_set_up), len(half))
""")


def test_every_asn1crypto_class_is_set_up_when_the_crypto_is_imported():
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS_CHECK], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    classes, not_set_up, half = map(int, result.stdout.split())
    assert classes > 300
    assert (not_set_up, half) == (0, 0)
