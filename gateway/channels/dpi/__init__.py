"""DPI (digital post to citizens) message formats for Corner 2: a library, no HTTP.

The DPI client (client.py) and the sandbox's Corner 2 build and read every DPI message through these
functions. Errors: `DpiFormatError` (a MessageFormatError: the input breaks a rule; words fit for a status
file) and `gateway.errors.SecurityError` (a signature, digest, certificate or limit check failed), plus
CryptoError from formats/cms when a package cannot be decrypted.

Types: DpiDocument(name, source: Path | bytes, mime_type, title=None, main_data=False); ManifestParties(
avsender_orgnr, postkasseadresse=None (digital only), personidentifikator=None, avsenderidentifikator=None,
fakturareferanse=None, language="NO"); Digital(avsender: Avsender, postkasseadresse, ikkesensitivtittel, spraak,
sikkerhetsnivaa, virkningstidspunkt, virkningsdato, aapningskvittering, varsler: Varsler, fingerprint,
maskinportentoken); Utskrift(avsender, mottaker: PostAdresse, retur: Retur, utskriftstype, posttype, fingerprint,
maskinportentoken). Organisation numbers may be bare (991825827) or ISO 6523 (0192:991825827).

Trust: read_jwt and read_dokumentpakke check signatures against the certificates the messages carry (x5c,
KeyInfo) and, with `at=`, their validity at that time; whether that certificate is trusted (its chain to a CA,
revocation) is the caller's question (gateway/trust), and check_sender binds it to the SBD's sender.

Sending a letter (what the client does, in this order):
    check_documents(docs, print_letter=...)                # before anything is built: 50 MB, types, names
    pakke = build_dokumentpakke(docs, ManifestParties(...), identity, recipient_cert, target_path,
                                print_letter=...)          # -> Dokumentpakke(path, size, fingerprint)
    letter = dataclasses.replace(Digital(...) or Utskrift(...), fingerprint=pakke.fingerprint,
                                 maskinportentoken=token)
    sbd = build_sbd(letter, sender=our_orgnr, receiver=provider_orgnr, message_id=..., conversation_id=...)
    jwt = sign_jwt(sbd, identity)                          # RS256, x5c = [leaf]
    POST multipart: forretningsmelding (application/jwt, sbd.jwt) = jwt; dokumentpakke (application/cms,
    asic.cms) = the bytes of pakke.path

Receiving (the sandbox's Corner 2, the tests):
    signed = read_jwt(jwt, at=None)                        # -> SignedSbd; verified against its own x5c[0]
    check_sender(signed)                                   # x5c's organisation number = the SBDH sender
    check_fingerprint(signed, cms_path_or_bytes)           # SHA-256 of the CMS bytes, not of the zip
    contents = read_dokumentpakke(cms_path, key, cert, extract_to)   # -> PackageContents (files, signer, ...)
    letter = business_from_json(signed.type, signed.business)        # -> Digital | Utskrift

Receipts:
    sbd = build_receipt("leveringskvittering", provider_orgnr=..., sender_orgnr=..., message_id=...,
                        conversation_id=..., letter_type="digital")   # the sandbox issues them
    jwt = sign_jwt(sbd, provider_identity, "RS512")                    # as Digipost signs them
    receipt = read_receipt(jwt)  # -> Receipt(type, message_id, conversation_id, timestamp, status, description,
                                 #            provider, details); status MOTTATT|LEVERT|LEST|FEIL|ANNET

Modules: business.py (Digital, Utskrift, Avsender, PostAdresse, Retur, Varsler, EpostVarsel, SmsVarsel,
Fingeravtrykk), package.py (writing), package_reader.py (reading), xades.py (signatures.xml),
forretningsmelding.py (SBD and JWT), receipts.py.
"""

from gateway.channels.dpi.business import (
    Avsender,
    BusinessMessage,
    Digital,
    DpiFormatError,
    EpostVarsel,
    Fingeravtrykk,
    PostAdresse,
    Retur,
    SmsVarsel,
    Utskrift,
    Varsler,
    business_from_json,
)
from gateway.channels.dpi.forretningsmelding import (
    SignedSbd,
    build_sbd,
    check_fingerprint,
    check_sender,
    read_jwt,
    sign_jwt,
)
from gateway.channels.dpi.package import (
    MAX_DOKUMENTPAKKE_BYTES,
    Dokumentpakke,
    DpiDocument,
    ManifestParties,
    build_dokumentpakke,
    check_documents,
    cms_fingerprint,
)
from gateway.channels.dpi.package_reader import PackageContents, PackageFile, read_asice, read_dokumentpakke
from gateway.channels.dpi.receipts import RECEIPT_TYPES, Receipt, build_receipt, read_receipt, receipt_from_sbd

__all__ = [
    "MAX_DOKUMENTPAKKE_BYTES", "RECEIPT_TYPES", "Avsender", "BusinessMessage", "Digital", "Dokumentpakke",
    "DpiDocument", "DpiFormatError", "EpostVarsel", "Fingeravtrykk", "ManifestParties", "PackageContents",
    "PackageFile", "PostAdresse", "Receipt", "Retur", "SignedSbd", "SmsVarsel", "Utskrift", "Varsler",
    "build_dokumentpakke", "build_receipt", "build_sbd", "business_from_json", "check_documents",
    "check_fingerprint", "check_sender", "cms_fingerprint", "read_asice", "read_dokumentpakke", "read_jwt",
    "read_receipt", "receipt_from_sbd", "sign_jwt",
]
