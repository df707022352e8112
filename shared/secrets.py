"""Encryption at rest for channel URLs, which carry provider secrets and phone numbers.

Keys rotate: :class:`SecretBox` takes the current key and any number of old ones
(``TANDEM_SECRET_KEY`` and ``TANDEM_OLD_SECRET_KEYS``). The current key encrypts; every key
decrypts (:class:`cryptography.fernet.MultiFernet`), and :meth:`SecretBox.rotate` re-encrypts
a value under the current key, so after ``tandem rotate-keys`` the old keys can go.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBox:
    """Encrypts with ``key`` and decrypts with ``key`` or any of ``old_keys``."""

    def __init__(self, key: str, old_keys: Sequence[str] = ()) -> None:
        self._current = _fernet(key, "TANDEM_SECRET_KEY")
        self._fernet = MultiFernet(
            [self._current] + [_fernet(k, "each of TANDEM_OLD_SECRET_KEYS") for k in old_keys]
        )

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plain: bytes) -> str:
        """``plain`` as a Fernet token under the current key (URL-safe text, for Redis)."""
        return self._fernet.encrypt(plain).decode()

    def decrypt(self, token: str) -> bytes:
        """What :meth:`encrypt` was given, under whichever configured key opens ``token``."""
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise ValueError(
                "cannot decrypt: wrong TANDEM_SECRET_KEY (or TANDEM_OLD_SECRET_KEYS) "
                "or corrupt value"
            ) from exc

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already encrypted under the current key."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted under the current key (ValueError if no key opens it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("cannot rotate: no configured key decrypts this value") from exc


def _fernet(key: str, name: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError as exc:
        raise ValueError(
            f"{name} must be a Fernet key (32 url-safe base64-encoded bytes); "
            "make one with `tandem keygen`"
        ) from exc
