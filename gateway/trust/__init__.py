"""Trust in certificates: whose they are, whether they chain to the environment's CAs, whether they are
revoked, and whether they may be used for what we use them for (signing, encrypting to).

    orgnr.py       the organisation number a certificate carries, and a short name for it
    revocation.py  CRLs (cached until their nextUpdate) and OCSP, fetched over the daemon's HTTP client
    store.py       TrustStore: path building and validation with pyhanko-certvalidator
    receivers.py   the receiver's certificate from a service record, checked before we encrypt to it
    registry.py    who may sign the service registry's answers (x5c chain and known subject, or pinned keys)
    policy.py      the facts per environment and the settings of config.yaml's trust section
    asn1_classes.py  asn1crypto's classes set up once at import (its first use is not thread-safe)
"""
