"""kubeconfig credentials: client keys never left on disk (docs/security.md)."""

from __future__ import annotations

import base64
import ssl
import tempfile
from pathlib import Path

import pytest
import yaml

from apextrader_operator.kube import load_credentials
from tests.fixtures.pki import cert_pem, certificate, key_pem, new_key


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = new_key()
    return cert_pem(certificate(name, key)), key_pem(key)


def test_client_keys_from_kubeconfig_leave_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, _ = _self_signed("ca")
    cert, key = _self_signed("user")
    b64 = lambda pem: base64.b64encode(pem).decode()  # noqa: E731
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:6443",
                            "certificate-authority-data": b64(ca),
                        },
                    }
                ],
                "users": [
                    {"name": "u", "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}
                ],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    creds = load_credentials(str(config))
    assert isinstance(creds.ssl, ssl.SSLContext) and creds.server == "https://127.0.0.1:6443"
    assert list(scratch.iterdir()) == []  # the key pair was loaded and its files removed
