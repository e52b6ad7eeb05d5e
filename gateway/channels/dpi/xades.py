"""XAdES signatures of a DPI ASiC-E (`META-INF/signatures.xml`), shaped as in Digdir's published examples.

One ds:Signature over one Reference per file (by name, no transforms, SHA-256) and a Reference to the
XAdES SignedProperties (inclusive C14N 1.0). The files are hashed by the caller, chunk by chunk, so a large
document never has to be in memory here. Built with lxml and cryptography rather than signxml: the shape is
fixed and small (our output reproduces the SDP client's golden signature byte for byte), and signxml's XAdES
signer lays out its own Ids and properties and signs data it is handed, not detached files by their digests.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from lxml import etree

from gateway.channels.dpi.business import DpiFormatError
from gateway.errors import SecurityError
from gateway.formats.keys import OrgIdentity
from gateway.xmlsafe import parse_bytes

ASIC_NS = "http://uri.etsi.org/02918/v1.2.1#"
# The old SDP packages (and the XSD before its correction) use "2918" without the zero.
ASIC_NAMESPACES = (ASIC_NS, "http://uri.etsi.org/2918/v1.2.1#")
DS = "http://www.w3.org/2000/09/xmldsig#"
XML_NS = "http://www.w3.org/XML/1998/namespace"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
_C14N_METHODS = {  # algorithm -> (exclusive, with comments)
    C14N: (False, False),
    C14N + "#WithComments": (False, True),
    "http://www.w3.org/2001/10/xml-exc-c14n#": (True, False),
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments": (True, True),
    # C14N 1.1 differs from 1.0 only in how xml:id, xml:base and the like are inherited; the old SDP packages
    # use it, and a signature with no xml:* attribute is rendered alike (checked in verify_signatures_xml).
    C14N11: (False, False),
}
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_SIGNATURE_HASHES = {
    RSA_SHA256: hashes.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384,
}
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_DIGESTS = {
    SHA256: "sha256",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",  # only for the signing certificate's CertDigest
}


@dataclass(frozen=True)
class XadesReference:
    name: str  # the file's name in the container
    mime_type: str
    digest: bytes  # SHA-256 of the file's bytes


@dataclass(frozen=True)
class XadesVerdict:
    signer: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # the other certificates in KeyInfo
    signing_time: datetime | None
    mime_types: dict[str, str]  # file name -> the MimeType its DataObjectFormat names


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except ValueError:
        raise SecurityError(f"signatures.xml: {what} is not base64") from None


def _c14n(element: etree._Element, algorithm: str = C14N) -> bytes:
    """Canonical form of `element` as a document subset. libxml2 (2.14) renders a subtree's children in the
    wrong default namespace when an ancestor declares another one, so the subtree is first copied out with
    every namespace in scope declared on its apex (what inclusive C14N renders there anyway)."""
    exclusive, comments = _C14N_METHODS[algorithm]
    apex = etree.Element(element.tag, dict(element.attrib), nsmap=element.nsmap)
    apex.text = element.text
    for child in element:
        apex.append(copy.deepcopy(child))
    return etree.tostring(apex, method="c14n", exclusive=exclusive, with_comments=comments)


def _issuer_name(certificate: x509.Certificate) -> str:
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(certificate.issuer.rdns))


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _signing_time(moment: datetime) -> str:
    """Milliseconds and the offset, `Z` for UTC, as the Java signers write it."""
    text = moment.isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def sign_signatures_xml(
    references: Sequence[XadesReference], identity: OrgIdentity, signing_time: datetime | None = None
) -> bytes:
    """The bytes of `META-INF/signatures.xml` signing the given files with the identity's key."""
    if not references:
        raise DpiFormatError("an XAdES signature needs at least one file to sign")
    moment = signing_time or datetime.now(UTC)
    certificate = identity.certificate
    root = etree.Element(f"{{{ASIC_NS}}}XAdESSignatures", nsmap={None: ASIC_NS})
    signature = etree.SubElement(root, f"{{{DS}}}Signature", {"Id": "Signature"}, nsmap={None: DS})
    signed_info = _sub(signature, f"{{{DS}}}SignedInfo")
    _sub(signed_info, f"{{{DS}}}CanonicalizationMethod", Algorithm=C14N)
    _sub(signed_info, f"{{{DS}}}SignatureMethod", Algorithm=RSA_SHA256)
    for index, reference in enumerate(references):
        element = _sub(signed_info, f"{{{DS}}}Reference", Id=f"ID_{index}", URI=reference.name)
        _sub(element, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
        _sub(element, f"{{{DS}}}DigestValue", _b64(reference.digest))
    properties_reference = _sub(signed_info, f"{{{DS}}}Reference", Type=SIGNED_PROPERTIES_TYPE,
                                URI="#SignedProperties")
    _sub(_sub(properties_reference, f"{{{DS}}}Transforms"), f"{{{DS}}}Transform", Algorithm=C14N)
    _sub(properties_reference, f"{{{DS}}}DigestMethod", Algorithm=SHA256)
    properties_digest = _sub(properties_reference, f"{{{DS}}}DigestValue")
    signature_value = _sub(signature, f"{{{DS}}}SignatureValue")
    x509_data = _sub(_sub(signature, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
    for member in (certificate, *identity.chain):
        _sub(x509_data, f"{{{DS}}}X509Certificate", _b64(member.public_bytes(serialization.Encoding.DER)))
    qualifying = etree.SubElement(_sub(signature, f"{{{DS}}}Object"), f"{{{XADES}}}QualifyingProperties",
                                  {"Target": "#Signature"}, nsmap={None: XADES, "ns2": DS})
    signed_properties = _sub(qualifying, f"{{{XADES}}}SignedProperties", Id="SignedProperties")
    signature_properties = _sub(signed_properties, f"{{{XADES}}}SignedSignatureProperties")
    _sub(signature_properties, f"{{{XADES}}}SigningTime", _signing_time(moment))
    cert = _sub(_sub(signature_properties, f"{{{XADES}}}SigningCertificate"), f"{{{XADES}}}Cert")
    cert_digest = _sub(cert, f"{{{XADES}}}CertDigest")
    _sub(cert_digest, f"{{{DS}}}DigestMethod", Algorithm=f"{DS}sha1")  # as Digdir's examples (and XAdES 1.3.2)
    _sub(cert_digest, f"{{{DS}}}DigestValue", _b64(certificate.fingerprint(hashes.SHA1())))  # noqa: S303
    issuer_serial = _sub(cert, f"{{{XADES}}}IssuerSerial")
    _sub(issuer_serial, f"{{{DS}}}X509IssuerName", _issuer_name(certificate))
    _sub(issuer_serial, f"{{{DS}}}X509SerialNumber", str(certificate.serial_number))
    object_properties = _sub(signed_properties, f"{{{XADES}}}SignedDataObjectProperties")
    for index, reference in enumerate(references):
        data_format = _sub(object_properties, f"{{{XADES}}}DataObjectFormat", ObjectReference=f"#ID_{index}")
        _sub(data_format, f"{{{XADES}}}MimeType", reference.mime_type)
    properties_digest.text = _b64(hashlib.sha256(_c14n(signed_properties)).digest())
    signature_value.text = _b64(
        identity.private_key.sign(_c14n(signed_info), padding.PKCS1v15(), hashes.SHA256())
    )
    declaration = b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>'  # as Digdir's examples
    return declaration + etree.tostring(root, encoding="UTF-8")


# ---------------------------------------------------------------------------------------- verifying


def _one(parent: etree._Element, path: str, what: str) -> etree._Element:
    found = parent.findall(path, {"ds": DS, "xades": XADES})
    if len(found) != 1:
        raise SecurityError(f"signatures.xml: expected one {what}, found {len(found)}")
    return found[0]


def _certificates(signature: etree._Element) -> list[x509.Certificate]:
    certificates = []
    for element in signature.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", {"ds": DS}):
        try:
            certificates.append(x509.load_der_x509_certificate(_unb64(element.text, "a certificate")))
        except ValueError:
            raise SecurityError("signatures.xml: a certificate in KeyInfo cannot be read") from None
    if not certificates:
        raise SecurityError("signatures.xml: KeyInfo carries no certificate")
    return certificates


def _signing_certificate(signed_properties: etree._Element, certificates: list[x509.Certificate]) -> x509.Certificate:
    """The KeyInfo certificate that the signed SigningCertificate names (so KeyInfo cannot swap signers)."""
    ns = {"ds": DS, "xades": XADES}
    cert_digest = signed_properties.find(
        "xades:SignedSignatureProperties/xades:SigningCertificate/xades:Cert/xades:CertDigest", ns)
    if cert_digest is None:
        raise SecurityError("signatures.xml: the signed properties do not name the signing certificate")
    method = _one(cert_digest, "ds:DigestMethod", "CertDigest DigestMethod").get("Algorithm", "")
    if method not in _DIGESTS:
        raise SecurityError(f"signatures.xml: the certificate digest method {method!r} is not supported")
    wanted = _unb64(_one(cert_digest, "ds:DigestValue", "CertDigest DigestValue").text, "the CertDigest")
    for certificate in certificates:
        der = certificate.public_bytes(serialization.Encoding.DER)
        if hashlib.new(_DIGESTS[method], der).digest() == wanted:
            return certificate
    raise SecurityError("signatures.xml: no certificate in KeyInfo matches the signed SigningCertificate digest")


def _same_document_digest(root: etree._Element, reference: etree._Element, uri: str) -> bytes:
    targets = root.xpath("//*[@Id=$id]", id=uri[1:])
    if len(targets) != 1:
        raise SecurityError(f"signatures.xml: the reference {uri} matches {len(targets)} elements, not one")
    algorithm = C14N
    for transform in reference.findall("ds:Transforms/ds:Transform", {"ds": DS}):
        algorithm = transform.get("Algorithm", "")
        if algorithm not in _C14N_METHODS:
            raise SecurityError(f"signatures.xml: the transform {algorithm!r} is not supported")
    return _c14n(targets[0], algorithm)


def _mime_types(signed_properties: etree._Element, ids: Mapping[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    ns = {"xades": XADES}
    for data_format in signed_properties.findall(
            "xades:SignedDataObjectProperties/xades:DataObjectFormat", ns):
        name = ids.get(data_format.get("ObjectReference", "").lstrip("#"))
        mime = data_format.findtext("xades:MimeType", namespaces=ns)
        if name is not None and mime:
            found[name] = mime
    return found


def verify_signatures_xml(xml: bytes, digests: Mapping[str, bytes]) -> XadesVerdict:
    """Verify `signatures.xml` against the SHA-256 `digests` of every file in the container (name -> digest).

    Every file must be signed and every signed file present; SignedProperties' digest, the signing certificate's
    digest and the SignatureValue must hold. Whether the signer is trusted is the caller's question.
    """
    root = parse_bytes(xml, "signatures.xml").getroot()
    if etree.QName(root).localname != "XAdESSignatures" or etree.QName(root).namespace not in ASIC_NAMESPACES:
        raise SecurityError(f"signatures.xml: the root element is {root.tag}, not an ASiC XAdESSignatures")
    signature = _one(root, "ds:Signature", "ds:Signature")
    signed_info = _one(signature, "ds:SignedInfo", "SignedInfo")
    c14n_method = _one(signed_info, "ds:CanonicalizationMethod", "CanonicalizationMethod").get("Algorithm", "")
    signature_method = _one(signed_info, "ds:SignatureMethod", "SignatureMethod").get("Algorithm", "")
    if c14n_method not in _C14N_METHODS:
        raise SecurityError(f"signatures.xml: the canonicalization {c14n_method!r} is not supported")
    if signature_method not in _SIGNATURE_HASHES:
        raise SecurityError(f"signatures.xml: the signature method {signature_method!r} is not supported")
    if C14N11 in xml.decode("utf-8", "replace") and root.xpath("//@*[namespace-uri()=$ns]", ns=XML_NS):
        raise SecurityError("signatures.xml: C14N 1.1 with xml:* attributes is not supported")
    signed_files: dict[str, str] = {}  # reference Id -> file name
    signed_names: set[str] = set()
    properties: etree._Element | None = None
    for reference in signed_info.findall("ds:Reference", {"ds": DS}):
        uri = reference.get("URI", "")
        method = _one(reference, "ds:DigestMethod", "DigestMethod").get("Algorithm", "")
        if method not in _DIGESTS or method.endswith("#sha1"):
            raise SecurityError(f"signatures.xml: the digest method {method!r} of {uri!r} is not supported")
        expected = _unb64(_one(reference, "ds:DigestValue", "DigestValue").text, f"the digest of {uri!r}")
        if uri.startswith("#"):
            actual = hashlib.new(_DIGESTS[method], _same_document_digest(root, reference, uri)).digest()
            if reference.get("Type") == SIGNED_PROPERTIES_TYPE:
                properties = root.xpath("//*[@Id=$id]", id=uri[1:])[0]
        else:
            name = unquote(uri)
            if method != SHA256:
                raise SecurityError(f"signatures.xml: {name!r} is signed with {method}; DPI uses SHA-256")
            if name not in digests:
                raise SecurityError(f"signatures.xml signs {name!r}, which is not in the container")
            if reference.findall("ds:Transforms", {"ds": DS}):
                raise SecurityError(f"signatures.xml: the reference to {name!r} has transforms; DPI uses none")
            actual = digests[name]
            signed_names.add(name)
            if reference.get("Id"):
                signed_files[reference.get("Id", "")] = name
        if actual != expected:
            raise SecurityError(f"signatures.xml: the digest of {uri!r} does not match; the package was altered")
    if properties is None or etree.QName(properties).localname != "SignedProperties":
        raise SecurityError("signatures.xml: the XAdES SignedProperties are not signed")
    unsigned = sorted(set(digests) - signed_names)
    if unsigned:
        raise SecurityError(f"signatures.xml does not sign {', '.join(unsigned)}")
    certificates = _certificates(signature)
    signer = _signing_certificate(properties, certificates)
    public_key = signer.public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise SecurityError("signatures.xml: the signer's key is not RSA")
    try:
        public_key.verify(_unb64(_one(signature, "ds:SignatureValue", "SignatureValue").text, "SignatureValue"),
                          _c14n(signed_info, c14n_method), padding.PKCS1v15(),
                          _SIGNATURE_HASHES[signature_method]())
    except InvalidSignature:
        raise SecurityError("signatures.xml: the signature value does not verify with the signer's key") from None
    signing_time = properties.findtext(
        "xades:SignedSignatureProperties/xades:SigningTime", namespaces={"xades": XADES})
    moment = None
    if signing_time:
        try:
            moment = datetime.fromisoformat(signing_time.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SecurityError(f"signatures.xml: SigningTime {signing_time!r} is not a time") from None
    return XadesVerdict(signer, tuple(c for c in certificates if c is not signer), moment,
                        _mime_types(properties, signed_files))
