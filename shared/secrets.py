"""Encryption at rest for channel URLs, which carry provider secrets and phone numbers."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Encrypts and decrypts short strings with the deployment's ``TANDEM_SECRET_KEY``."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except ValueError as exc:
            raise ValueError(
                "TANDEM_SECRET_KEY must be a Fernet key (32 url-safe base64-encoded bytes); "
                "make one with `tandem keygen`"
            ) from exc

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("cannot decrypt: wrong TANDEM_SECRET_KEY or corrupt value") from exc
