"""The test infrastructure itself: real registries, the token server, certificates, seeding.

Everything here uses the independent client of tests/support/images.py, never pushmanifest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.certs import RsaKey, libtrust_key_id, make_signing_key, openssl
from support.images import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    SPEC_PLATFORMS,
    RegistryHTTPError,
    SeedClient,
    delete_manifest,
    head_manifest,
    list_tags,
    make_spec_images,
    parse_challenges,
    read_manifest,
    seed_image,
)
from support.registry import (
    RegistryStartError,
    RegistryUnavailable,
    find_registry_binary,
    in_ci,
    start_open_registry,
    start_registry,
)
from support.tokenserver import Grant, TokenServer, decode_jwt, parse_scope


def require_registry_binary() -> None:
    """Skip without the registry binary; fail under CI=true (like the fixtures)."""
    try:
        find_registry_binary()
    except RegistryUnavailable as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


KID_RE = re.compile(r"^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$")


# -- certs and JWT (no registry) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> RsaKey:
    return make_signing_key(tmp_path_factory.mktemp("key"))


def test_rs256_signature_verifies_with_openssl(signing_key: RsaKey, tmp_path: Path) -> None:
    message = b"header.claims"
    signature = signing_key.sign_rs256(message)
    assert signing_key.verify_rs256(message, signature)
    assert not signing_key.verify_rs256(message + b"x", signature)
    (tmp_path / "m").write_bytes(message)
    (tmp_path / "s").write_bytes(signature)
    pub = tmp_path / "pub.pem"
    pub.write_bytes(openssl("x509", "-in", str(signing_key.cert_file), "-pubkey", "-noout"))
    out = openssl(
        "dgst",
        "-sha256",
        "-verify",
        str(pub),
        "-signature",
        str(tmp_path / "s"),
        str(tmp_path / "m"),
    )
    assert b"Verified OK" in out


def test_kid_is_libtrust_key_id_of_the_certificate_key(signing_key: RsaKey) -> None:
    # Independently: the certificate's public key, DER, SHA-256, 30 bytes, base32, groups of 4.
    pem = openssl("x509", "-in", str(signing_key.cert_file), "-pubkey", "-noout")
    der = openssl("pkey", "-pubin", "-outform", "DER", input=pem)
    digest = hashlib.sha256(der).digest()[:30]
    b32 = base64.b32encode(digest).decode()
    assert "=" not in b32 and len(b32) == 48
    assert signing_key.kid == ":".join(b32[i : i + 4] for i in range(0, 48, 4))
    assert KID_RE.match(signing_key.kid)
    assert libtrust_key_id(der) == signing_key.kid


def test_jwt_layout(signing_key: RsaKey) -> None:
    ts = TokenServer(signing_key, service="svc", issuer="iss", expires_in=123)
    token = ts.issue("alice", [Grant("repository", "alice/app", ("pull", "push"))])
    header, claims = decode_jwt(token)
    assert header == {"typ": "JWT", "alg": "RS256", "kid": signing_key.kid}
    assert claims["iss"] == "iss" and claims["aud"] == "svc" and claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 123 and claims["nbf"] <= claims["iat"]
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]
    assert len(claims["jti"]) >= 16
    signing_input, _, signature = token.rpartition(".")
    sig = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert signing_key.verify_rs256(signing_input.encode(), sig)


def test_scope_parsing_and_policy(signing_key: RsaKey) -> None:
    assert parse_scope("repository:team/app:pull,push") == (
        "repository",
        "team/app",
        ("pull", "push"),
    )
    assert parse_scope("repository(plugin):a/b:pull") == ("repository(plugin)", "a/b", ("pull",))
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ("*",))
    assert parse_scope("nonsense") is None
    ts = TokenServer(signing_key, public_repositories=["public/*"])
    scopes = [
        "repository:alice/app:pull,push",
        "repository:bob/app:pull,push",
        "repository:library/alpine:pull,push",
        "repository:public/x:push,pull",
        "registry:catalog:*",
        "repository:alice/app:delete",
    ]
    assert ts.grant("alice", scopes) == (
        Grant("repository", "alice/app", ("pull", "push", "delete")),
        Grant("repository", "library/alpine", ("pull",)),
        Grant("repository", "public/x", ("pull",)),
    )
    assert ts.grant(None, scopes) == (
        Grant("repository", "library/alpine", ("pull",)),
        Grant("repository", "public/x", ("pull",)),
    )
    assert ts.grant("alice", ["repository:alicex/app:pull"]) == ()


def test_challenge_parsing() -> None:
    header = (
        'Bearer realm="http://127.0.0.1:1/token",service="svc",'
        'scope="repository:a/b:pull,push",error="insufficient_scope"'
    )
    assert parse_challenges(header) == [
        (
            "bearer",
            {
                "realm": "http://127.0.0.1:1/token",
                "service": "svc",
                "scope": "repository:a/b:pull,push",
                "error": "insufficient_scope",
            },
        )
    ]
    assert parse_challenges('Basic realm="r"') == [("basic", {"realm": "r"})]


# -- open registry --------------------------------------------------------------------------------


def test_open_seed_and_read_back(open_registry: Any) -> None:
    assert open_registry.url == f"http://{open_registry.host}"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", open_registry.host)
    images = make_spec_images(open_registry, "support/spec")
    assert list(images) == list(SPEC_PLATFORMS)
    assert images["arm32v7"].platform == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert images["amd64"].platform == {"architecture": "amd64", "os": "linux"}
    assert len({image.digest for image in images.values()}) == 4
    for tag, image in images.items():
        data, content_type, digest = read_manifest(open_registry, "support/spec", tag)
        assert data == image.manifest
        assert (content_type, digest, len(data)) == (DOCKER_MANIFEST, image.digest, image.size)
        manifest = json.loads(data)
        assert manifest["config"]["digest"] == image.config_digest
        # the config blob carries the platform
        config = httpx.get(f"{open_registry.url}/v2/support/spec/blobs/{image.config_digest}")
        assert config.status_code == 200
        platform = {
            k: v for k, v in config.json().items() if k in ("architecture", "os", "variant")
        }
        assert platform == image.platform
    assert sorted(list_tags(open_registry, "support/spec")) == sorted(SPEC_PLATFORMS)


def test_open_oci_image_and_windows_os_version(open_registry: Any) -> None:
    image = seed_image(
        open_registry, "support/oci", "win", os="windows", oci=True, os_version="10.0.17763.1"
    )
    assert image.media_type == OCI_MANIFEST
    assert image.platform == {
        "architecture": "amd64",
        "os": "windows",
        "os.version": "10.0.17763.1",
    }
    data, content_type, digest = read_manifest(open_registry.host, "support/oci", "win")
    assert (data, content_type, digest) == (image.manifest, OCI_MANIFEST, image.digest)
    assert head_manifest(open_registry, "support/oci", image.digest) == (
        OCI_MANIFEST,
        image.digest,
        image.size,
    )


def test_open_images_are_unique_and_deletable(open_registry: Any) -> None:
    a = seed_image(open_registry, "support/uniq", "a")
    b = seed_image(open_registry, "support/uniq", "a")  # same tag, new image
    assert a.digest != b.digest
    assert read_manifest(open_registry, "support/uniq", "a")[2] == b.digest
    delete_manifest(open_registry, "support/uniq", b.digest)  # storage.delete.enabled
    assert head_manifest(open_registry, "support/uniq", "a") is None
    with pytest.raises(RegistryHTTPError) as excinfo:
        read_manifest(open_registry, "support/uniq", "a")
    assert excinfo.value.status == 404 and excinfo.value.codes == ["MANIFEST_UNKNOWN"]


# -- token registry -------------------------------------------------------------------------------


def alice(server: Any) -> dict[str, str]:
    return {"username": "alice", "password": server.users["alice"]}


def test_token_seed_and_read_back(token_registry: Any) -> None:
    ts = token_registry.token_server
    assert token_registry.users == {"alice": "alice-secret", "bob": "bob-secret"}
    assert ts.url.startswith("http://127.0.0.1:")
    ts.reset()
    image = seed_image(
        token_registry,
        "alice/app",
        "v1",
        architecture="arm64",
        variant="v8",
        **alice(token_registry),
    )
    assert ts.count == 1  # one token for pull,push, reused for every request
    [request] = ts.requests
    assert (request.method, request.path, request.user, request.status) == (
        "GET",
        "/token",
        "alice",
        200,
    )
    assert request.query["service"] == [token_registry.service]
    assert request.scopes == ("repository:alice/app:pull,push",)
    assert request.granted == (Grant("repository", "alice/app", ("pull", "push")),)
    data, content_type, digest = read_manifest(
        token_registry, "alice/app", "v1", **alice(token_registry)
    )
    assert (data, content_type, digest) == (image.manifest, DOCKER_MANIFEST, image.digest)
    assert ts.count == 2
    ts.reset()
    assert (ts.count, ts.requests) == (0, [])


def test_token_registry_challenge(token_registry: Any) -> None:
    resp = httpx.get(f"{token_registry.url}/v2/")
    assert resp.status_code == 401
    [(scheme, params)] = parse_challenges(resp.headers["WWW-Authenticate"])
    assert scheme == "bearer"
    assert params == {"realm": token_registry.token_server.realm, "service": token_registry.service}


def test_token_anonymous_push_denied(token_registry: Any) -> None:
    with pytest.raises(RegistryHTTPError) as excinfo:
        seed_image(token_registry, "alice/anon", "t")
    error = excinfo.value
    assert error.status == 401 and error.codes == ["UNAUTHORIZED"]
    assert 'error="insufficient_scope"' in error.headers["www-authenticate"]
    anonymous = [
        r
        for r in token_registry.token_server.requests
        if r.scopes == ("repository:alice/anon:pull,push",)
    ]
    assert anonymous and anonymous[-1].user is None and anonymous[-1].granted == ()


def test_token_bob_cannot_push_or_pull_alice(token_registry: Any) -> None:
    seed_image(token_registry, "alice/private", "t", **alice(token_registry))
    bob = {"username": "bob", "password": token_registry.users["bob"]}
    with pytest.raises(RegistryHTTPError) as excinfo:
        seed_image(token_registry, "alice/private", "bob", **bob)
    assert excinfo.value.status == 401
    with pytest.raises(RegistryHTTPError):
        read_manifest(token_registry, "alice/private", "t", **bob)
    # bob's own namespace works
    image = seed_image(token_registry, "bob/app", "t", **bob)
    assert read_manifest(token_registry, "bob/app", "t", **bob)[2] == image.digest


def test_token_public_and_library_pull_anonymously(token_registry: Any) -> None:
    server = token_registry
    ts = server.token_server
    # alice may not push into library/ or public/: mint an owner token directly to seed there
    for repository in ("library/base", "public/tool"):
        token = ts.issue("admin", [Grant("repository", repository, ("pull", "push"))])
        with SeedClient(server) as client:
            client.use_token(f"repository:{repository}:pull,push", token)
            image = seed_image(server, repository, "latest", client=client)
        assert read_manifest(server, repository, "latest")[2] == image.digest
        with pytest.raises(RegistryHTTPError):
            seed_image(server, repository, "x", **alice(server))


def test_token_wrong_password(token_registry: Any) -> None:
    ts = token_registry.token_server
    ts.reset()
    with pytest.raises(RegistryHTTPError) as excinfo:
        seed_image(token_registry, "alice/app", "x", username="alice", password="wrong")
    assert excinfo.value.status == 401
    assert json.loads(excinfo.value.body) == {"details": "incorrect username or password"}
    [request] = ts.requests
    assert request.user is None and request.presented_user == "alice" and request.status == 401
    # unknown user, and the OAuth2 form
    resp = httpx.get(ts.realm, params={"service": token_registry.service}, auth=("eve", "x"))
    assert resp.status_code == 401
    resp = httpx.post(
        ts.realm,
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "wrong",
            "service": token_registry.service,
        },
    )
    assert resp.status_code == 401
    assert resp.json() == {"details": "incorrect username or password"}
    assert all("wrong" not in json.dumps(r.form) for r in ts.requests)


def test_token_get_response_and_asking_too_much(token_registry: Any) -> None:
    ts = token_registry.token_server
    resp = httpx.get(
        ts.realm,
        params=[
            ("service", token_registry.service),
            ("account", "alice"),
            ("scope", "repository:alice/app:pull,push,delete"),
            ("scope", "repository:bob/app:pull,push"),
            ("scope", "registry:catalog:*"),
        ],
        auth=("alice", "alice-secret"),
    )
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"] and body["expires_in"] == ts.expires_in
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["issued_at"])
    header, claims = decode_jwt(body["token"])
    assert header["kid"] == ts.key.kid
    assert claims["aud"] == token_registry.service and claims["iss"] == ts.issuer
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push", "delete"]}
    ]
    assert ts.requests[-1].account == "alice"
    # the registry accepts it: the delete action works
    image = seed_image(token_registry, "alice/del", "t", **alice(token_registry))
    deleted = httpx.delete(
        f"{token_registry.url}/v2/alice/del/manifests/{image.digest}",
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert deleted.status_code == 401  # the token is for alice/app, not alice/del
    token = ts.issue("alice", [Grant("repository", "alice/del", ("delete",))])
    deleted = httpx.delete(
        f"{token_registry.url}/v2/alice/del/manifests/{image.digest}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert deleted.status_code == 202


def test_token_oauth2_password_and_refresh(token_registry: Any) -> None:
    ts = token_registry.token_server
    service = token_registry.service
    resp = httpx.post(
        ts.realm,
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "alice-secret",
            "service": service,
            "client_id": "pushmanifest-tests",
            "access_type": "offline",
            "scope": "repository:alice/oauth:pull,push repository:library/x:pull",
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {"token", "access_token", "expires_in", "issued_at", "refresh_token", "scope"} <= set(
        body
    )
    assert body["scope"] == "repository:alice/oauth:pull,push repository:library/x:pull"
    assert ts.requests[-1].form["password"] == ["**********"]
    refreshed = httpx.post(
        ts.realm,
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "service": service,
            "client_id": "pushmanifest-tests",
            "scope": "repository:alice/oauth:pull",
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    _, claims = decode_jwt(refreshed.json()["access_token"])
    assert claims["sub"] == "alice"
    assert claims["access"] == [{"type": "repository", "name": "alice/oauth", "actions": ["pull"]}]
    assert "refresh_token" not in refreshed.json()
    bad = httpx.post(ts.realm, data={"grant_type": "refresh_token", "refresh_token": "nope"})
    assert bad.status_code == 401
    unsupported = httpx.post(ts.realm, data={"grant_type": "client_credentials"})
    assert unsupported.status_code == 400
    # GET with offline_token=true also hands out a refresh token
    got = httpx.get(
        ts.realm,
        params={"service": service, "offline_token": "true", "client_id": "x"},
        auth=("bob", "bob-secret"),
    )
    assert got.status_code == 200 and got.json()["refresh_token"]


def test_token_server_settings_delay_and_expiry(token_registry: Any) -> None:
    ts = token_registry.token_server
    with ts.settings(delay=0.5, expires_in=1):
        ts.reset()
        start = time.monotonic()
        assert httpx.get(ts.realm, timeout=60).status_code == 200
        assert time.monotonic() - start >= 0.5  # a lower bound: load only lengthens it
        assert ts.count == 1
        assert all(r.end - r.start >= 0.5 for r in ts.requests)
        # Requests are served concurrently: one whose head never ends does not hold up the
        # next (served one after another, the next would hang: the bound is for that only).
        address, port = ts.url.removeprefix("http://").split(":")
        with socket.create_connection((address, int(port)), timeout=60) as stuck:
            stuck.sendall(b"GET /token HTTP/1.1\r\nHost: x\r\n")  # no blank line: unfinished
            assert httpx.get(ts.realm, timeout=60).status_code == 200
            assert ts.count == 2
            stuck.sendall(b"Connection: close\r\n\r\n")  # now it ends, and is answered
            assert stuck.makefile("rb").readline().startswith(b"HTTP/1.1 200 ")
        assert ts.count == 3
        body = httpx.get(ts.realm).json()
        assert body["expires_in"] == 1
        _, claims = decode_jwt(body["token"])
        assert claims["exp"] - claims["iat"] == 1
    assert (ts.delay, ts.expires_in) == (0.0, 300)


def test_token_expired_tokens_are_refused_after_the_leeway(token_registry: Any) -> None:
    """distribution 2.8 accepts a token up to 60 s after ``exp`` (and before ``nbf``)."""
    seed_image(token_registry, "alice/exp", "t", **alice(token_registry))
    ts = token_registry.token_server
    grant = [Grant("repository", "alice/exp", ("pull",))]
    url = f"{token_registry.url}/v2/alice/exp/tags/list"

    def status(token: str) -> int:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code

    now = time.time()
    assert status(ts.issue("alice", grant)) == 200
    assert status(ts.issue("alice", grant, now=now - 40, lifetime=10)) == 200  # 30 s past exp
    expired = httpx.get(
        url,
        headers={"Authorization": f"Bearer {ts.issue('alice', grant, now=now - 200, lifetime=10)}"},
    )
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
    assert status(ts.issue("alice", grant, audience="another-service")) == 401


# -- TLS registry ---------------------------------------------------------------------------------


def test_tls_seed_and_read_back(tls_registry: Any) -> None:
    assert tls_registry.url == f"https://{tls_registry.host}"
    assert Path(tls_registry.ca_file).is_file()
    image = seed_image(tls_registry, "team/app", "amd64", **alice(tls_registry))
    bob = {"username": "bob", "password": tls_registry.users["bob"]}
    data, content_type, digest = read_manifest(tls_registry, "team/app", "amd64", **bob)
    assert (data, content_type, digest) == (image.manifest, DOCKER_MANIFEST, image.digest)


def test_tls_verify_against_the_ca(tls_registry: Any) -> None:
    for host in (tls_registry.host, f"localhost:{tls_registry.port}"):
        resp = httpx.get(f"https://{host}/v2/", verify=tls_registry.ssl_context())
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        read_manifest(tls_registry.url, "team/app", "amd64", **alice(tls_registry))
    # the CA verifies the server certificate, and the certificate names both hosts
    cert = tls_registry.root / "tls" / "server.crt"
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls_registry.ca_file), str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    text = openssl("x509", "-in", str(cert), "-noout", "-ext", "subjectAltName").decode()
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text


def test_tls_wrong_password(tls_registry: Any) -> None:
    with pytest.raises(RegistryHTTPError) as excinfo:
        read_manifest(tls_registry, "team/app", "amd64", username="alice", password="wrong")
    assert excinfo.value.status == 401
    resp = httpx.get(
        f"{tls_registry.url}/v2/",
        verify=tls_registry.verify,
        auth=("alice", tls_registry.users["alice"]),
    )
    assert resp.status_code == 200


# -- lifecycle ------------------------------------------------------------------------------------


@pytest.mark.registry
def test_start_and_stop_outside_fixtures(tmp_path: Path) -> None:
    require_registry_binary()
    with start_open_registry(tmp_path / "a") as server:
        assert server.running
        assert httpx.get(f"{server.url}/v2/").status_code == 200
        assert "rootdirectory" in server.config_file.read_text()
    assert not server.running and server.process.returncode is not None
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/", timeout=2)


@pytest.mark.registry
def test_start_failure_shows_the_log(tmp_path: Path) -> None:
    require_registry_binary()
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(RegistryStartError) as excinfo:
        start_registry(
            tmp_path, kind="broken", tls={"certificate": missing, "key": missing}, timeout=10
        )
    message = str(excinfo.value)
    assert "exited with status" in message and "missing.pem" in message


def test_missing_binary_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUSHMANIFEST_TEST_REGISTRY", str(tmp_path / "no-such-registry"))
    with pytest.raises(RegistryUnavailable, match="no-such-registry"):
        start_open_registry(tmp_path)
