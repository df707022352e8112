"""Keys that rotate: the channel box, action links and calendar feed tokens accept the old
keys while a rotation is under way, and only ever write with the current one."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from cryptography.fernet import Fernet

from services.scheduler.api.feeds import feed_key, feed_matches, feed_token
from shared import links
from shared.secrets import SecretBox
from shared.settings import Settings

A, B, C = (Fernet.generate_key().decode() for _ in range(3))


def test_the_current_key_encrypts_and_every_key_decrypts() -> None:
    under_a = SecretBox(A).encrypt(b"json://x?token=1")
    box = SecretBox(B, [A])
    assert box.decrypt(under_a) == b"json://x?token=1"
    assert not box.is_current(under_a)
    rotated = box.rotate(under_a)
    assert box.is_current(rotated) and SecretBox(B).decrypt(rotated) == b"json://x?token=1"
    assert box.is_current(box.encrypt(b"json://y"))
    with pytest.raises(ValueError):
        SecretBox(B).decrypt(under_a)
    with pytest.raises(ValueError, match="no configured key"):
        SecretBox(B).rotate(SecretBox(C).encrypt(b"json://z"))
    with pytest.raises(ValueError, match="TANDEM_OLD_SECRET_KEYS"):
        SecretBox(B, ["not a key"])


def test_settings_list_the_old_keys_after_the_current_one() -> None:
    settings = Settings(secret_key=B, old_secret_keys=f" {A}, ,{B},{C}")
    assert settings.old_keys() == [A, B, C]
    assert settings.secret_keys() == [B, A, C]  # the current key once, first
    assert Settings(secret_key=B).secret_keys() == [B]


def test_links_signed_with_an_old_key_verify_while_it_is_configured() -> None:
    grant = links.Grant("cpl_1", "rit_1@20260101T000000Z", "prt_1", "done", int(time.time()) + 60)
    token = links.sign(A, grant)
    assert links.verify([B, A], token) == grant
    assert links.verify(A, token) == grant
    with pytest.raises(links.LinkError, match="signature"):
        links.verify([B], token)


def test_feed_tokens_have_a_key_of_their_own_and_a_generation() -> None:
    token = feed_token(A, "cpl_1", "0")
    assert len(feed_key(A)) == 32 and feed_key(A) != A.encode()
    # not the raw secret key's HMAC (what feeds used before)
    raw = hmac.new(A.encode(), b"feed:cpl_1", hashlib.sha256).hexdigest()[:32]
    assert token != raw
    assert feed_token(A, "cpl_1", "1f2e") != token  # a rotated feed is a new URL
    assert feed_token(A, "cpl_2", "0") != token
    assert feed_matches(token, [B, A], "cpl_1", "0")
    assert not feed_matches(token, [B], "cpl_1", "0")
    assert not feed_matches(token, [A], "cpl_1", "1f2e")
