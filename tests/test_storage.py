"""Which event URLs name a blob in our uploads container."""

from __future__ import annotations

import pytest

from shared.platform.storage import UntrustedBlobUrl, resolve_blob_url

AZURE = "https://contosoehr.blob.core.windows.net/"
AZURITE = "http://127.0.0.1:10000/devstoreaccount1/"


@pytest.mark.parametrize(
    ("url", "service", "name"),
    [
        (
            "https://contosoehr.blob.core.windows.net/patient-uploads/2024/stays.csv",
            AZURE,
            "2024/stays.csv",
        ),
        (
            "https://CONTOSOEHR.blob.core.windows.net:443/patient-uploads/a%20b.csv",
            AZURE,
            "a b.csv",
        ),
        ("http://127.0.0.1:10000/devstoreaccount1/patient-uploads/stays.csv", AZURITE, "stays.csv"),
    ],
)
def test_blobs_in_the_uploads_container_are_trusted(url, service, name):
    assert resolve_blob_url(url, service, "patient-uploads").name == name


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/patient-uploads/stays.csv",
        "https://contosoehr.blob.core.windows.net.evil.example/patient-uploads/stays.csv",
        "http://contosoehr.blob.core.windows.net/patient-uploads/stays.csv",
        "https://contosoehr.blob.core.windows.net:8443/patient-uploads/stays.csv",
        "https://othersacct.blob.core.windows.net/patient-uploads/stays.csv",
        "https://contosoehr.blob.core.windows.net/other/stays.csv",
        "https://contosoehr.blob.core.windows.net/patient-uploads-old/stays.csv",
        "https://contosoehr.blob.core.windows.net/patient-uploads/",
        "https://contosoehr.blob.core.windows.net/patient-uploads/../secrets/x.csv",
        "https://contosoehr.blob.core.windows.net/patient-uploads/%2E%2E/secrets/x.csv",
        "https://contosoehr.blob.core.windows.net/patient-uploads/x.csv?sig=forged",
        "https://evil.example@contosoehr.blob.core.windows.net/patient-uploads/x.csv",
        "https://[::1/patient-uploads/x.csv",
        "ftp://contosoehr.blob.core.windows.net/patient-uploads/x.csv",
    ],
)
def test_anything_else_is_refused(url):
    with pytest.raises(UntrustedBlobUrl):
        resolve_blob_url(url, AZURE, "patient-uploads")
