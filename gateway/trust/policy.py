"""What the trust checks need to know per environment, and config.yaml's trust section resolved.

Facts (networks notes §4 and §6): the service registry signs its answers with Digdir's enterprise
certificate (991825827); DPF documents are encrypted to KS's SvarUt certificate (KS-KOMMUNESEKTORENS
ORGANISASJON, 971032146, a Commfides G3 certificate in production). Both stay overridable
(trust.registry_orgnr, trust.svarut_orgnr) should the test environment use another. The sandbox has its
own fictional registry and KS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.environments import PRODUCTION, SANDBOX, TEST
from gateway.trust.store import REFUSE, WARN

DIGDIR_ORGNR = "991825827"
KS_ORGNR = "971032146"
SANDBOX_REGISTRY = ("944444432", "Adressetjeneste (sandkasse)")  # signs the sandbox registry's answers
SANDBOX_SVARUT_ORGNR = "944444416"

REGISTRY_ORGNR = {TEST: DIGDIR_ORGNR, PRODUCTION: DIGDIR_ORGNR, SANDBOX: SANDBOX_REGISTRY[0]}
SVARUT_ORGNR = {TEST: KS_ORGNR, PRODUCTION: KS_ORGNR, SANDBOX: SANDBOX_SVARUT_ORGNR}
# Production refuses a certificate whose revocation status nobody can tell; test and the sandbox accept it
# with a warning in the status file (test CAs' CRL servers lag, and a refusal there stops testing).
DEFAULT_REVOCATION = {PRODUCTION: REFUSE, TEST: WARN, SANDBOX: WARN}


@dataclass(frozen=True)
class TrustSettings:
    revocation: str = WARN
    registry_orgnr: str = DIGDIR_ORGNR
    svarut_orgnr: str = KS_ORGNR
    # receiver orgnr -> organisations whose certificate may stand for it (a parent for its sub-units, a host
    # for the organisations it runs an integration point for)
    served_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def trust_settings(config: object) -> TrustSettings:
    """config.yaml's trust section with the environment's defaults filled in."""
    environment = config.network.environment  # type: ignore[attr-defined]
    trust = config.trust  # type: ignore[attr-defined]
    return TrustSettings(
        revocation=trust.revocation or DEFAULT_REVOCATION.get(environment, REFUSE),
        registry_orgnr=trust.registry_orgnr or REGISTRY_ORGNR.get(environment, DIGDIR_ORGNR),
        svarut_orgnr=trust.svarut_orgnr or SVARUT_ORGNR.get(environment, KS_ORGNR),
        served_by=dict(trust.served_by),
    )
