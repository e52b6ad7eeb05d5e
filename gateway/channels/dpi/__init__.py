"""DPI (digital post to citizens) message formats for Corner 2: a library, no I/O beyond the files it is given.

The DPI client (client.py) and the sandbox's Corner 2 build and read every DPI message through these
functions; nothing here talks HTTP. All errors are `DpiFormatError` (a `ValueError`) with words fit for a
status file, or `gateway.errors.CryptoError`/`SecurityError` from the shared crypto modules.

business.py: the business messages as dataclasses, each with `to_json() -> dict` and `from_json(dict)`:
    Digital(avsender: Avsender, postkasseadresse: str, ikkesensitivtittel: str, spraak="NO",
            sikkerhetsnivaa=3, virkningstidspunkt: datetime|None, aapningskvittering=False,
            varsler: Varsler = Varsler(epost=None, sms=None), fingerprint: Fingeravtrykk|None,
            maskinportentoken: str|None)
    Utskrift(avsender, mottaker: PostAdresse, retur: Retur, utskriftstype "FARGE"|"SORT_HVIT",
             posttype "A"|"B", fingerprint, maskinportentoken)
    Avsender(orgnr: str, avsenderidentifikator: str|None=None, fakturareferanse: str|None=None)
    PostAdresse(navn, adresselinje1..4, postnummer, poststed, land) / Retur(mottaker, returposthaandtering)
    EpostVarsel(epostadresse, varslingstekst, repetisjoner) / SmsVarsel(mobiltelefonnummer, ...)
    Fingeravtrykk.of_digest(sha256: bytes) ; business_from_json(name, dict) -> Digital | Utskrift

package.py: the dokumentpakke (ASiC-E signed with XAdES, CMS-encrypted).
    MAX_DOKUMENTPAKKE_BYTES = 50 MiB (the documents' total, checked before anything is built)
    DpiDocument(name: str, source: Path | bytes, mime_type: str, title: str | None = None)
    check_documents(documents: Sequence[DpiDocument]) -> None      raises DpiFormatError (size, type, names)
    ManifestParties(avsender_orgnr, postkasseadresse: str|None, personidentifikator: str|None,
                    avsenderidentifikator: str|None, fakturareferanse: str|None)   (no person for print)
    build_dokumentpakke(documents, parties: ManifestParties, identity: OrgIdentity,
                        recipient: x509.Certificate, target: Path, *, signing_time=None) -> Dokumentpakke
        Dokumentpakke(path: Path (the CMS), size: int, fingerprint: Fingeravtrykk)   fingerprint = SHA-256 of the CMS
    cms_fingerprint(path_or_bytes) -> Fingeravtrykk                   (streams a file in chunks)
    read_dokumentpakke(cms: Path, private_key, certificate, extract_to: Path, *, at: datetime|None=None)
        -> PackageContents(files: list[PackageFile(name, path, mime_type, size)], main_document: str,
                           manifest: bytes, signer: x509.Certificate, chain, signing_time)
        decrypts, checks the ASiC-E, every XAdES digest, SignedProperties and SignatureValue.
    read_asice(zip: Path, extract_to: Path) -> PackageContents         (already decrypted)

xades.py: XAdES signatures.xml as in Digdir's examples.
    sign_signatures_xml(references: Sequence[XadesReference(name, mime_type, digest: bytes sha256)],
                        identity: OrgIdentity, signing_time: datetime|None = None) -> bytes
    verify_signatures_xml(xml: bytes, digests: Mapping[str, bytes]) -> XadesVerdict(signer, chain, signing_time)

forretningsmelding.py: the SBD as a JWS (compact, RS256, x5c = [leaf]).
    build_sbd(business: Digital|Utskrift|receipt, *, sender: str, receiver: str, message_id: str,
              conversation_id: str, created: datetime|None=None, expected_response: datetime|None=None) -> dict
    sign_jwt(sbd: dict, identity: OrgIdentity, algorithm="RS256") -> str
    read_jwt(token: str|bytes, *, at: datetime|None=None) -> SignedSbd(sbd: dict, type: str, message_id,
             conversation_id, sender, receiver, business: dict, certificate: x509.Certificate, algorithm)
        verifies the signature against x5c[0] (RS256/RS512) and, when `at` is given, the certificate's validity.
    check_fingerprint(signed: SignedSbd, cms: Path | bytes) -> None      raises DpiFormatError on a mismatch

receipts.py: DPI receipts (kvitteringer) and feil.
    RECEIPT_TYPES = ("mottakskvittering", "leveringskvittering", "aapningskvittering",
                     "returpostkvittering", "feil", "varslingfeiletkvittering")
    Receipt(type, message_id, conversation_id, timestamp: datetime, status: str (MOTTATT|LEVERT|LEST|FEIL|ANNET),
            description: str (the receipt's words), details: dict)
    read_receipt(token: str|bytes, *, at=None) -> Receipt           (a signed JWT from Corner 2)
    receipt_from_sbd(sbd: dict) -> Receipt                           (already verified)
    build_receipt(type, *, provider_orgnr, sender_orgnr, message_id, conversation_id, timestamp,
                  feiltype=None, detaljer=None, varslingskanal=None, beskrivelse=None) -> dict (an SBD)
        for the sandbox's Corner 2 to issue receipts (then sign_jwt(sbd, identity, "RS512") as Digipost does).
"""
