"""Local endpoints that speak two Azure protocols with no emulator, for the real SDKs to call.

* :class:`ManagedIdentityEndpoint`: App Service's managed-identity protocol
  (``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, ``GET ?resource=...&api-version=2019-08-01``).
* :class:`KeyVaultEndpoint`: Key Vault's secrets API over HTTPS with a self-signed
  certificate: the bearer challenge, then ``GET /secrets/{name}``.
"""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

TENANT = "72f988bf-0000-0000-0000-000000000000"


class _Server:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    @property
    def owner(self) -> Any:
        return self.server.owner  # type: ignore[attr-defined]

    def reply(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _IdentityHandler(_Handler):
    def do_GET(self) -> None:
        owner: ManagedIdentityEndpoint = self.owner
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if self.headers.get("X-IDENTITY-HEADER") != owner.header_secret:
            self.reply(
                401, {"error": "invalid_request", "error_description": "bad identity header"}
            )
            return
        owner.requests.append(query)
        resource = query.get("resource", "")
        token = f"mi-{secrets.token_hex(8)}"
        owner.issued[token] = resource
        expires_on = int(time.time()) + owner.lifetime_seconds
        self.reply(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": query.get("client_id", "system-assigned"),
            },
        )


class ManagedIdentityEndpoint(_Server):
    def __init__(self) -> None:
        super().__init__(_IdentityHandler)
        self.header_secret = secrets.token_hex(16)
        self.requests: list[dict[str, str]] = []
        self.issued: dict[str, str] = {}
        self.lifetime_seconds = 3600

    @property
    def env(self) -> dict[str, str]:
        return {
            "IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.port}/msi/token",
            "IDENTITY_HEADER": self.header_secret,
        }


class _VaultHandler(_Handler):
    def do_GET(self) -> None:
        owner: KeyVaultEndpoint = self.owner
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if not token or owner.identity.issued.get(token) not in (
            "https://vault.azure.net",
            "https://vault.azure.net/",
        ):
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                'resource="https://vault.azure.net"'
            )
            self.reply(
                401,
                {"error": {"code": "Unauthorized", "message": "no token"}},
                {"WWW-Authenticate": challenge},
            )
            return
        parts = urllib.parse.urlsplit(self.path).path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "secrets":
            self.reply(400, {"error": {"code": "BadParameter", "message": "unknown path"}})
            return
        name = parts[1]
        owner.reads.append(name)
        if name in owner.denied:
            self.reply(
                403,
                {
                    "error": {
                        "code": "Forbidden",
                        "message": "access denied",
                        "innererror": {"code": "ForbiddenByRbac"},
                    }
                },
            )
            return
        if name not in owner.secrets:
            self.reply(404, {"error": {"code": "SecretNotFound", "message": "not found"}})
            return
        version = secrets.token_hex(8)
        base = f"https://127.0.0.1:{owner.port}"
        self.reply(
            200,
            {
                "value": owner.secrets[name],
                "id": f"{base}/secrets/{name}/{version}",
                "attributes": {
                    "enabled": True,
                    "created": int(time.time()),
                    "updated": int(time.time()),
                    "recoveryLevel": "Recoverable+Purgeable",
                },
            },
        )


class KeyVaultEndpoint(_Server):
    def __init__(self, identity: ManagedIdentityEndpoint, workdir: Path) -> None:
        super().__init__(_VaultHandler)
        self.identity = identity
        self.secrets: dict[str, str] = {}
        self.denied: set[str] = set()
        self.reads: list[str] = []
        self.ca_file = workdir / "vault-cert.pem"
        cert, key = _self_signed(self.ca_file, workdir / "vault-key.pem")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _self_signed(cert_path: Path, key_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local key vault")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
