"""Credentials: key loading, the permission check, fresh signed headers, a real signed connect."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from recorder.errors import AuthenticationFailed
from recorder.link.auth import (
    ENV_KEY_ID,
    ENV_PASSPHRASE,
    ENV_PRIVATE_KEY_PATH,
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Credentials,
    load_private_key,
)
from replay.server.auth import HeaderVerifier
from schemas.errors import ConfigError

from .live_helpers import sim_server, watched_session

pytestmark = pytest.mark.timeout(30)
PATH = "/trade-api/ws/v2"
KEY_ID = "a952bcbe-ec3b-4b5b-b8f9-11ae3a1f4a3e"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def write_key(
    path: Path,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
    password: bytes | None = None,
    mode: int = 0o600,
) -> Path:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, encryption))
    path.chmod(mode)
    return path


def verifier(key: rsa.RSAPrivateKey) -> HeaderVerifier:
    return HeaderVerifier({KEY_ID: public_pem(key)}, PATH, freshness_ms=30_000)


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_pkcs8_and_pkcs1_keys_sign_headers_the_exchange_accepts(
    tmp_path: Path, key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    path = write_key(tmp_path / "key.pem", key, fmt)
    creds = Credentials.from_file(KEY_ID, path, env={})
    headers = creds.headers(PATH)
    assert set(headers) == {KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert headers[KEY_HEADER] == KEY_ID
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time_ns() // 1_000_000) < 5_000
    assert verifier(key).verify(headers, time.time_ns() // 1_000_000).ok


def test_every_call_signs_afresh(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    creds = Credentials.from_file(KEY_ID, write_key(tmp_path / "k.pem", key), env={})
    first = creds.headers(PATH)
    time.sleep(0.002)
    second = creds.headers(PATH)
    assert first[TIMESTAMP_HEADER] != second[TIMESTAMP_HEADER]
    assert first[SIGNATURE_HEADER] != second[SIGNATURE_HEADER]
    now_ms = time.time_ns() // 1_000_000
    assert verifier(key).verify(first, now_ms).ok and verifier(key).verify(second, now_ms).ok


def test_an_encrypted_key_is_opened_with_the_passphrase_from_the_environment(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    path = write_key(tmp_path / "enc.pem", key, password=b"correct horse")
    creds = Credentials.from_file(KEY_ID, path, env={ENV_PASSPHRASE: "correct horse"})
    assert verifier(key).verify(creds.headers(PATH), time.time_ns() // 1_000_000).ok
    with pytest.raises(ConfigError, match="encrypted and no passphrase"):
        Credentials.from_file(KEY_ID, path, env={})
    with pytest.raises(ConfigError, match="check the passphrase"):
        Credentials.from_file(KEY_ID, path, env={ENV_PASSPHRASE: "wrong"})


def test_an_encrypted_pkcs1_key_opens_too(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    path = write_key(
        tmp_path / "enc1.pem", key, serialization.PrivateFormat.TraditionalOpenSSL, b"pw"
    )
    assert isinstance(load_private_key(path, b"pw"), rsa.RSAPrivateKey)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_readable_by_group_or_others_is_refused_with_the_fix(
    tmp_path: Path, key: rsa.RSAPrivateKey, mode: int
) -> None:
    path = write_key(tmp_path / "open.pem", key, mode=mode)
    with pytest.raises(ConfigError) as caught:
        Credentials.from_file(KEY_ID, path, env={})
    message = str(caught.value)
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {path}" in message


def test_a_key_that_is_not_rsa_is_refused(tmp_path: Path) -> None:
    path = write_key(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError, match="not an RSA key"):
        Credentials.from_file(KEY_ID, path, env={})


def test_a_file_that_is_not_pem_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "junk.pem"
    path.write_text("sekrit-material-not-a-key")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        Credentials.from_file(KEY_ID, path, env={})
    assert "sekrit" not in str(caught.value)


def test_credentials_come_from_the_environment_or_a_config_table(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    path = write_key(tmp_path / "k.pem", key)
    env = {ENV_KEY_ID: KEY_ID, ENV_PRIVATE_KEY_PATH: str(path)}
    assert Credentials.from_env(env).key_id == KEY_ID
    assert (
        Credentials.from_config({"private_key_path": str(path)}, env={ENV_KEY_ID: "k2"}).key_id
        == "k2"
    )
    with pytest.raises(ConfigError, match=ENV_KEY_ID):
        Credentials.from_env({ENV_PRIVATE_KEY_PATH: str(path)})
    with pytest.raises(ConfigError, match=r"auth\.key_file"):
        Credentials.from_config({"key_file": str(path)}, env={})


def test_the_repr_shows_neither_key_material_nor_the_whole_key_id(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    creds = Credentials.from_file(KEY_ID, write_key(tmp_path / "k.pem", key), env={})
    text = repr(creds) + str(creds)
    assert KEY_ID not in text and "PRIVATE" not in text and "RSAPrivateKey" not in text


async def test_a_signed_session_connects_to_an_exchange_that_requires_auth(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    creds = Credentials.from_file(KEY_ID, write_key(tmp_path / "k.pem", key), env={})
    async with sim_server(auth="required", public_keys={KEY_ID: public_pem(key)}) as server:
        watched = watched_session(server, credentials=creds)
        async with watched.session.connect() as session:
            trades = await session.subscribe_trade(raw=True)
            assert (await anext(trades)).channel == "trade"


async def test_a_refused_signature_ends_the_session_after_one_attempt(
    tmp_path: Path, key: rsa.RSAPrivateKey
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    creds = Credentials.from_file(KEY_ID, write_key(tmp_path / "k.pem", other), env={})
    async with sim_server(auth="required", public_keys={KEY_ID: public_pem(key)}) as server:
        watched = watched_session(server, credentials=creds)
        with pytest.raises(AuthenticationFailed, match="HTTP 401"):
            async with watched.session.connect():
                pass
        assert watched.handshakes() == 1  # a refused key is never retried
        assert [e.event.will_retry for e in watched.events("error")] == [False]
