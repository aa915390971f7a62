"""Credentials: bearer, basic, SMART Backend Services (RS384 / ES384, PEM / JWKS), refresh."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_hcc.errors import ExitCode
from fhir_hcc.server.auth import (
    SmartBackendCredentials,
    build_credentials,
    load_signing_key,
)
from fhir_hcc.server.errors import AuthError
from fhir_hcc.server.options import AuthOptions
from server.conftest import fast_options
from server.fake_fhir import BASE

TOKEN_URL = "https://auth.example.org/token"
PATIENT_URL = f"{BASE}/Patient/p1"
PATIENT = {"resourceType": "Patient", "id": "p1"}


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


def pem_file(tmp_path: Path, key) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


class TokenEndpoint:
    """Checks each client assertion against the public key and issues numbered tokens."""

    def __init__(self, public_key, algorithm: str, expires_in: int = 300) -> None:
        self.public_key = public_key
        self.algorithm = algorithm
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.headers: list[dict] = []
        self.claims: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        assert form["grant_type"] == "client_credentials"
        assert form["scope"] == "system/*.read"
        assert form["client_assertion_type"].endswith("jwt-bearer")
        # The signature and audience are checked; expiry against the test's fake clock below.
        claims = jwt.decode(
            form["client_assertion"],
            self.public_key,
            algorithms=[self.algorithm],
            audience=TOKEN_URL,
            options={"verify_exp": False},
        )
        assert claims["iss"] == claims["sub"] == "app-1"
        self.claims.append(claims)
        self.headers.append(jwt.get_unverified_header(form["client_assertion"]))
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return httpx.Response(
            200, json={"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        )


def smart_config(httpx_mock):
    httpx_mock.add_response(
        url=f"{BASE}/.well-known/smart-configuration",
        json={"token_endpoint": TOKEN_URL, "grant_types_supported": ["client_credentials"]},
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def smart_credentials(key_path: Path, clock=None, key_id="k1") -> SmartBackendCredentials:
    options = AuthOptions(mode="smart", client_id="app-1", private_key_file=key_path, key_id=key_id)
    return build_credentials(options, {}, clock or Clock())


@pytest.mark.parametrize(("key_name", "algorithm"), [("rsa_key", "RS384"), ("ec_key", "ES384")])
def test_smart_token_from_discovered_endpoint(
    httpx_mock, run_client, tmp_path, request, key_name, algorithm
):
    key = request.getfixturevalue(key_name)
    endpoint = TokenEndpoint(key.public_key(), algorithm)
    smart_config(httpx_mock)
    httpx_mock.add_callback(endpoint, url=TOKEN_URL, method="POST")
    httpx_mock.add_response(
        url=PATIENT_URL, json=PATIENT, match_headers={"Authorization": "Bearer token-1"}
    )
    credentials = smart_credentials(pem_file(tmp_path, key))
    assert run_client(lambda c: c.get_json(PATIENT_URL), credentials=credentials) == PATIENT
    assert endpoint.headers == [{"alg": algorithm, "typ": "JWT", "kid": "k1"}]
    assert endpoint.claims[0]["exp"] == Clock().now + 300  # the five-minute maximum
    assert endpoint.claims[0]["jti"]


def test_token_reused_until_shortly_before_expiry(httpx_mock, run_client, tmp_path, rsa_key):
    clock = Clock()
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384", expires_in=300)
    smart_config(httpx_mock)
    httpx_mock.add_callback(endpoint, url=TOKEN_URL, method="POST", is_reusable=True)
    httpx_mock.add_response(url=PATIENT_URL, json=PATIENT, is_reusable=True)
    credentials = smart_credentials(pem_file(tmp_path, rsa_key), clock)

    async def action(client):
        await client.get_json(PATIENT_URL)
        clock.now += 200  # well inside the lifetime: same token
        await client.get_json(PATIENT_URL)
        clock.now += 80  # 280 s: within the refresh margin (30 s) of expiry
        await client.get_json(PATIENT_URL)

    run_client(action, credentials=credentials)
    sent = [r.headers.get("Authorization") for r in httpx_mock.get_requests(url=PATIENT_URL)]
    assert sent == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]


def test_one_reauthentication_on_401(httpx_mock, run_client, tmp_path, rsa_key):
    endpoint = TokenEndpoint(rsa_key.public_key(), "RS384")
    smart_config(httpx_mock)
    httpx_mock.add_callback(endpoint, url=TOKEN_URL, method="POST", is_reusable=True)
    httpx_mock.add_response(url=PATIENT_URL, status_code=401)
    httpx_mock.add_response(url=PATIENT_URL, json=PATIENT)
    credentials = smart_credentials(pem_file(tmp_path, rsa_key))

    async def action(client):
        body = await client.get_json(PATIENT_URL)
        return body, client.stats.reauthentications

    assert run_client(action, credentials=credentials) == (PATIENT, 1)
    assert endpoint.issued == ["token-1", "token-2"]

    # A second 401 in a row is final.
    httpx_mock.add_response(url=PATIENT_URL, status_code=401)
    httpx_mock.add_response(url=PATIENT_URL, status_code=401)
    with pytest.raises(AuthError) as caught:
        run_client(lambda c: c.get_json(PATIENT_URL), credentials=credentials)
    assert caught.value.exit_code == ExitCode.AUTH_FAILED


def test_refused_client_is_an_auth_error_without_secrets(httpx_mock, run_client, tmp_path, rsa_key):
    smart_config(httpx_mock)
    httpx_mock.add_response(
        url=TOKEN_URL,
        method="POST",
        status_code=400,
        json={"error": "invalid_client", "error_description": "assertion eyJhbGciOi..."},
    )
    credentials = smart_credentials(pem_file(tmp_path, rsa_key))
    with pytest.raises(AuthError) as caught:
        run_client(lambda c: c.get_json(PATIENT_URL), credentials=credentials)
    assert str(caught.value) == (
        f"token endpoint {TOKEN_URL} refused client 'app-1': HTTP 400, invalid_client"
    )


def test_missing_smart_configuration(httpx_mock, run_client, tmp_path, rsa_key):
    httpx_mock.add_response(url=f"{BASE}/.well-known/smart-configuration", status_code=404)
    credentials = smart_credentials(pem_file(tmp_path, rsa_key))
    with pytest.raises(AuthError, match=r"no token_endpoint .*FHIR_HCC_TOKEN_URL"):
        run_client(lambda c: c.get_json(PATIENT_URL), credentials=credentials)


def test_jwks_key_is_chosen_by_kid(tmp_path, ec_key, rsa_key):
    jwks = {
        "keys": [
            json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key)) | {"kid": "r"},
            json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key)) | {"kid": "e", "alg": "ES384"},
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    chosen = load_signing_key(path, "e", None)
    assert (chosen.algorithm, chosen.key_id) == ("ES384", "e")
    assert load_signing_key(path, None, None).algorithm == "RS384"
    with pytest.raises(AuthError, match="no private key with kid 'x'"):
        load_signing_key(path, "x", None)


def test_bad_key_files_name_the_file_only(tmp_path, rsa_key):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot really\n-----END PRIVATE KEY-----\n")
    with pytest.raises(AuthError, match=r"garbage.pem: not an unencrypted PEM private key"):
        load_signing_key(garbage, None, None)
    with pytest.raises(AuthError, match="ES384 does not fit this key; it signs RS384"):
        load_signing_key(pem_file(tmp_path, rsa_key), None, "ES384")
    with pytest.raises(AuthError, match="cannot read the private key"):
        load_signing_key(tmp_path / "absent.pem", None, None)


def test_bearer_from_env_or_file(tmp_path):
    env = {"FHIR_HCC_TOKEN": "s3cr3t-token"}
    bearer = build_credentials(AuthOptions(mode="bearer"), env)
    assert "s3cr3t" not in repr(bearer)
    token_file = tmp_path / "token"
    token_file.write_text("file-token\n")
    from_file = build_credentials(AuthOptions(mode="bearer", token_file=token_file), {})
    assert from_file._header == "Bearer file-token"
    with pytest.raises(AuthError, match="no bearer token: set FHIR_HCC_TOKEN or give a file"):
        build_credentials(AuthOptions(mode="bearer"), {})


def test_basic_auth_header(httpx_mock, run_client):
    credentials = build_credentials(
        AuthOptions(mode="basic", username="alice"), {"FHIR_HCC_PASSWORD": "pa55"}
    )
    expected = "Basic " + base64.b64encode(b"alice:pa55").decode()
    httpx_mock.add_response(
        url=PATIENT_URL, json=PATIENT, match_headers={"Authorization": expected}
    )
    run_client(lambda c: c.get_json(PATIENT_URL), credentials=credentials)
    with pytest.raises(AuthError, match="FHIR_HCC_USERNAME"):
        build_credentials(AuthOptions(mode="basic"), {"FHIR_HCC_PASSWORD": "pa55"})


def test_credentials_stay_on_the_servers_origin(httpx_mock, run_client):
    credentials = build_credentials(AuthOptions(mode="bearer"), {"FHIR_HCC_TOKEN": "tok"})
    elsewhere = "https://cdn.example.net/Patient/p1"
    httpx_mock.add_response(url=elsewhere, json=PATIENT)
    run_client(lambda c: c.get_json(elsewhere), credentials=credentials)
    assert "Authorization" not in httpx_mock.get_requests()[0].headers


def test_secrets_never_logged_or_in_errors(httpx_mock, run_client, caplog):
    secret = "t0p-s3cret-bearer"
    credentials = build_credentials(AuthOptions(mode="bearer"), {"FHIR_HCC_TOKEN": secret})
    httpx_mock.add_response(url=PATIENT_URL, status_code=503)
    httpx_mock.add_response(url=PATIENT_URL, status_code=401, json={"error": "bad"})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AuthError) as caught:
        run_client(
            lambda c: c.get_json(PATIENT_URL), credentials=credentials, options=fast_options()
        )
    assert secret not in str(caught.value)
    assert secret not in caplog.text
    assert "retry 1" in caplog.text  # the log did record the retry
