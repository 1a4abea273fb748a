"""Who may talk to the station's OPC UA server (inspector/feeds/opcua_out.py): the server's certificate and
key, the trusted client certificates (`trusted_clients_dir`), the user identity check, and the unsecured
channel closed to every service."""

from __future__ import annotations

import ipaddress
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.config import OpcuaConfig
from inspector.errors import ConfigError
from inspector.feeds.opcua_model import _ua

if TYPE_CHECKING:  # the types only; the modules are imported in `_asyncua` when OPC UA is configured
    from asyncua import Server
    from cryptography import x509

log = logging.getLogger("inspector.feeds.opcua_out")  # the feed's one logger, as before the split


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (nothing else on the network can reach it)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ClientTrust:
    """The client certificates allowed in (`trusted_clients_dir`): a certificate is trusted when it is in the
    folder itself (a PLC's self-signed certificate, copied there) or issued directly by a CA certificate in
    the folder, and it is within its validity dates. The folder is read again at each check, so a certificate
    copied in (or removed) counts from the next connection. No folder: any valid certificate (logged)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder) if folder else None

    def anchors(self) -> list[x509.Certificate]:
        from cryptography import x509

        if self.folder is None:
            return []
        found: list[x509.Certificate] = []
        for path in sorted(self.folder.iterdir()):
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
                if b"-----BEGIN CERTIFICATE-----" in data:
                    found.extend(x509.load_pem_x509_certificates(data))
                else:
                    found.append(x509.load_der_x509_certificate(data))
            except (OSError, ValueError) as exc:
                log.warning("lineout.opcua.trusted_clients_dir: %s is not a certificate (%s); ignored", path, exc)
        return found

    def problem(self, certificate: x509.Certificate) -> str | None:
        """Why `certificate` may not connect, or None."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.serialization import Encoding

        now = datetime.now(timezone.utc)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return "certificate outside its validity dates"
        if self.folder is None:
            return None
        der = certificate.public_bytes(Encoding.DER)
        for anchor in self.anchors():
            if anchor.public_bytes(Encoding.DER) == der:
                return None
            try:
                is_ca = anchor.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                if is_ca and certificate.issuer == anchor.subject:
                    certificate.verify_directly_issued_by(anchor)
                    return None
            except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
                continue
        return f"certificate not in {self.folder}"


class ServerTrust:
    """The certificates' part of `OpcuaOutput`: its own certificate and key, and the client check."""

    config: OpcuaConfig
    trust: ClientTrust

    def _read_certificates(self) -> tuple[Any, Any, str | None]:
        """The server's certificate and key (PEM or DER), and the application URI its certificate names (clients
        compare it with the server's, so the server takes it from there)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        files = {}
        for setting in ("certificate_file", "private_key_file"):
            path = Path(getattr(self.config, setting))
            try:
                files[setting] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"lineout.opcua.{setting} {path}: cannot read ({exc.strerror or exc})") from exc
        data = files["certificate_file"]
        try:
            certificate = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                           else x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise ConfigError(f"lineout.opcua.certificate_file {self.config.certificate_file}: "
                              f"not a PEM or DER certificate ({exc})") from exc
        data = files["private_key_file"]
        try:
            key = (serialization.load_pem_private_key(data, None) if b"-----BEGIN" in data
                   else serialization.load_der_private_key(data, None))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"lineout.opcua.private_key_file {self.config.private_key_file}: not an unencrypted "
                              f"PEM or DER private key ({exc})") from exc
        try:
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if not uris:
            log.warning("lineout.opcua.certificate_file names no application URI (subjectAltName URI:...); "
                        "most clients refuse such a server")
        return certificate, key, uris[0] if uris else None

    async def _validate_client(self, certificate: x509.Certificate, description: Any) -> None:
        """CreateSession: the client application's certificate must be trusted."""
        ua = _ua()
        from asyncua.common.utils import ServiceError

        problem = self.trust.problem(certificate)
        if problem:
            log.warning("OPC UA client %s refused: %s", getattr(description, "ApplicationUri", "?"), problem)
            code = (ua.StatusCodes.BadCertificateTimeInvalid if "validity" in problem
                    else ua.StatusCodes.BadCertificateUntrusted)
            raise ServiceError(code)


def _station_users(secure: bool, trust: ClientTrust) -> Any:
    """Who a session runs as: a plain user, never Admin (so AccessLevel decides every write); on a secure
    server only the holder of a trusted certificate (the X.509 identity token's, checked by its signature)."""
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    class StationUsers(UserManager):
        def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                     certificate: Any = None) -> User | None:
            if not secure:
                return User(role=UserRole.User, name="local")
            if certificate is None:
                return None
            problem = trust.problem(_x509(certificate))
            if problem:
                log.warning("OPC UA user certificate refused: %s", problem)
                return None
            return User(role=UserRole.User, name="certificate")

    return StationUsers()


def _x509(certificate: Any) -> x509.Certificate:
    from cryptography import x509

    return x509.load_der_x509_certificate(certificate) if isinstance(certificate, bytes) else certificate


def _refuse_unsecured_sessions(server: Server) -> None:
    """OPC UA keeps an unsecured channel open for endpoint discovery even when no endpoint offers it, and
    asyncua runs any session opened on it without permission checks. Give that channel a policy whose rules
    refuse every service after ActivateSession (discovery and session set-up are not checked), so a client
    cannot downgrade a signed server to plain text. `_policies` is where asyncua keeps the channel policies
    it chooses from; the endpoints it advertises are unchanged."""
    ua = _ua()
    from asyncua.crypto.permission_rules import PermissionRuleset
    from asyncua.crypto.security_policies import SecurityPolicyFactory, SecurityPolicyNone

    class NothingAllowed(PermissionRuleset):
        def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
            return False

    server._policies.append(SecurityPolicyFactory(SecurityPolicyNone, ua.MessageSecurityMode.None_,
                                                  permission_ruleset=NothingAllowed()))
