"""Supply-chain artifacts attached to images, written by the tests' own client (not pushmanifest's).

* :func:`attach_cosign` writes what ``cosign sign`` / ``cosign attest`` / ``cosign attach sbom``
  write: an OCI image manifest at the tag ``sha256-<hex>.sig`` (``.att``, ``.sbom``) next to the
  image, whose layers are the signed payloads (a simplesigning JSON with the
  ``dev.cosignproject.cosign/signature`` annotation; a DSSE envelope; an SPDX document), with a
  config listing them as its rootfs, as cosign does.
* :func:`attach_oci_artifact` writes an OCI 1.1 artifact: an image manifest with ``artifactType``,
  the empty config descriptor and a ``subject`` naming the image, put by digest; and, as a client
  of a registry without the referrers API must, the referrers tag ``sha256-<hex>`` (an OCI index
  of the image's referrers) updated with it (entries already there kept).

Built to the OCI image spec v1.1 and cosign's layout by hand: deliberately does not import
:mod:`pushmanifest`.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from .images import RegistryHTTPError, SeedClient, sha256

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
SPDX = "text/spdx+json"
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"

#: cosign's layer media type per tag suffix.
COSIGN_LAYERS = {".sig": SIMPLESIGNING, ".att": DSSE, ".sbom": SPDX}


@dataclass(frozen=True)
class Artifact:
    """What was attached: its manifest's digest, bytes and media type, and where it is found."""

    digest: str
    manifest: bytes
    media_type: str
    artifact_type: str
    tag: str = ""  # cosign's tag, or "" for a referrer put by digest

    @property
    def size(self) -> int:
        return len(self.manifest)


def referrers_tag(digest: str) -> str:
    return digest.replace(":", "-", 1)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _payload(suffix: str, repository: str, digest: str) -> bytes:
    if suffix == ".sig":
        return _json(
            {
                "critical": {
                    "identity": {"docker-reference": repository},
                    "image": {"docker-manifest-digest": digest},
                    "type": "cosign container image signature",
                },
                "optional": {"nonce": uuid.uuid4().hex},
            }
        )
    if suffix == ".att":
        statement = _json(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://slsa.dev/provenance/v0.2",
                "subject": [{"name": repository, "digest": {"sha256": digest.split(":", 1)[1]}}],
                "predicate": {"builder": {"id": f"tests-{uuid.uuid4().hex}"}},
            }
        )
        return _json(
            {
                "payloadType": "application/vnd.in-toto+json",
                "payload": base64.b64encode(statement).decode(),
                "signatures": [{"sig": base64.b64encode(uuid.uuid4().bytes).decode()}],
            }
        )
    return _json(
        {"spdxVersion": "SPDX-2.3", "name": repository, "documentNamespace": uuid.uuid4().hex}
    )


def attach_cosign(
    client: SeedClient, repository: str, digest: str, suffix: str = ".sig"
) -> Artifact:
    """Write cosign's artifact ``suffix`` (.sig, .att, .sbom) for ``repository@digest``."""
    payload = _payload(suffix, repository, digest)
    layer_type = COSIGN_LAYERS[suffix]
    payload_digest = client.push_blob(repository, payload)
    config = _json(
        {
            "architecture": "",
            "config": {},
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
        }
    )
    config_digest = client.push_blob(repository, config)
    layer: dict[str, Any] = {
        "mediaType": layer_type,
        "size": len(payload),
        "digest": payload_digest,
    }
    if suffix == ".sig":
        # Not a real ECDSA signature (no cosign here): its place and form are cosign's.
        layer["annotations"] = {COSIGN_SIGNATURE: base64.b64encode(uuid.uuid4().bytes).decode()}
    elif suffix == ".att":
        layer["annotations"] = {"predicateType": "https://slsa.dev/provenance/v0.2"}
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": config_digest},
            "layers": [layer],
        }
    )
    tag = referrers_tag(digest) + suffix
    put = client.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    return Artifact(put, manifest, OCI_MANIFEST, layer_type, tag)


def attach_oci_artifact(
    client: SeedClient,
    repository: str,
    subject: tuple[str, int, str],
    artifact_type: str = "application/vnd.example.sbom.v1+json",
    *,
    update_referrers_tag: bool = True,
) -> Artifact:
    """An OCI 1.1 artifact referring to ``subject`` (digest, size, media type), put by digest;
    with ``update_referrers_tag``, listed in the referrers tag too (read, appended, written)."""
    digest, size, media_type = subject
    empty = b"{}"
    client.push_blob(repository, empty)
    content = _json({"artifact": artifact_type, "of": digest, "nonce": uuid.uuid4().hex})
    content_digest = client.push_blob(repository, content)
    annotations = {"org.opencontainers.image.created": "2026-12-02T00:00:00Z"}
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "size": 2, "digest": sha256(empty)},
            "layers": [
                {"mediaType": "application/json", "size": len(content), "digest": content_digest}
            ],
            "subject": {"mediaType": media_type, "size": size, "digest": digest},
            "annotations": annotations,
        }
    )
    put = sha256(manifest)
    client.put_manifest(repository, put, manifest, OCI_MANIFEST)
    if update_referrers_tag:
        entry = {
            "mediaType": OCI_MANIFEST,
            "digest": put,
            "size": len(manifest),
            "artifactType": artifact_type,
            "annotations": annotations,
        }
        index = read_referrers_tag(client, repository, digest) or []
        index.append(entry)
        write_referrers_tag(client, repository, digest, index)
    return Artifact(put, manifest, OCI_MANIFEST, artifact_type)


def read_referrers_tag(client: SeedClient, repository: str, digest: str) -> Optional[list[Any]]:
    """The entries of the referrers tag of ``digest``; None when there is no such tag."""
    try:
        body, _, _ = client.get_manifest(repository, referrers_tag(digest), accept=[OCI_INDEX])
    except RegistryHTTPError as exc:
        if exc.status == 404:
            return None
        raise
    data = json.loads(body)
    assert data["mediaType"] == OCI_INDEX, data
    return list(data["manifests"])


def write_referrers_tag(
    client: SeedClient, repository: str, digest: str, entries: list[Any]
) -> str:
    index = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return client.put_manifest(repository, referrers_tag(digest), index, OCI_INDEX)
