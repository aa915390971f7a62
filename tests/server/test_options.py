"""ClientOptions from the environment and the command line; the AIMD limiter."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fhir_hcc.errors import ConfigError
from fhir_hcc.server.options import AuthOptions, ClientOptions
from fhir_hcc.server.ratelimit import AdaptiveLimiter


def test_options_from_environment():
    env = {
        "FHIR_HCC_AUTH": "smart",
        "FHIR_HCC_CLIENT_ID": "app",
        "FHIR_HCC_PRIVATE_KEY_FILE": "/keys/k.pem",
        "FHIR_HCC_CONCURRENCY": "8",
        "FHIR_HCC_MAX_RETRY_WAIT": "15.5",
        "FHIR_HCC_VERIFY_TLS": "false",
        "FHIR_HCC_CA_BUNDLE": "/etc/ca.pem",
        "FHIR_HCC_TOKEN": "never-stored",
    }
    options = ClientOptions.from_env(env)
    assert options.auth == AuthOptions(
        mode="smart", client_id="app", private_key_file=Path("/keys/k.pem")
    )
    assert (options.concurrency, options.max_retry_wait) == (8, 15.5)
    assert options.verify_tls is False
    assert options.ca_bundle == Path("/etc/ca.pem")
    assert "never-stored" not in repr(options)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FHIR_HCC_AUTH": "kerberos"}, "FHIR_HCC_AUTH must be one of"),
        ({"FHIR_HCC_CONCURRENCY": "many"}, "FHIR_HCC_CONCURRENCY: cannot read 'many' as int"),
        ({"FHIR_HCC_ALLOW_GAPS": "perhaps"}, "FHIR_HCC_ALLOW_GAPS: cannot read"),
        ({"FHIR_HCC_BATCH_SIZE": "0"}, "batch_size must be at least 1"),
    ],
)
def test_bad_environment_values(env, message):
    with pytest.raises(ConfigError, match=message):
        ClientOptions.from_env(env)


def test_limiter_halves_on_throttle_and_recovers_additively():
    limiter = AdaptiveLimiter(8)
    limiter.on_throttle()
    limiter.on_throttle()
    assert limiter.limit == 2.0
    for _ in range(2):
        limiter.on_success()
    assert limiter.limit == pytest.approx(2.0 + 1 / 2 + 1 / 2.5)
    for _ in range(200):
        limiter.on_success()
    assert limiter.limit == 8.0
    for _ in range(10):
        limiter.on_throttle()
    assert limiter.limit == 1.0  # never below one request in flight
    assert limiter.throttled == 12


def test_limiter_bounds_requests_in_flight():
    async def main() -> int:
        limiter = AdaptiveLimiter(4)
        limiter.on_throttle()  # limit 2
        peak = 0

        async def work() -> None:
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(work() for _ in range(20)))
        return peak

    assert asyncio.run(main()) == 2


def test_tls_verification_options(tmp_path):
    import ssl

    import certifi

    from fhir_hcc.server.client import _tls_verification

    assert _tls_verification(ClientOptions()) is True
    assert _tls_verification(ClientOptions(verify_tls=False)) is False
    context = _tls_verification(ClientOptions(ca_bundle=Path(certifi.where())))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ConfigError, match=r"absent\.pem: cannot load the CA bundle"):
        _tls_verification(ClientOptions(ca_bundle=tmp_path / "absent.pem"))
