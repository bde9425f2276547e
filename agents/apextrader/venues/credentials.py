"""API credentials of one exchange (values kept as `SecretStr`, never printed)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr


@dataclass(frozen=True)
class Credentials:
    api_key: SecretStr
    secret: SecretStr
    password: SecretStr | None = None

    def secrets(self) -> list[str]:
        """The raw values, for redaction only."""
        vals = [self.api_key.get_secret_value(), self.secret.get_secret_value()]
        if self.password is not None:
            vals.append(self.password.get_secret_value())
        return [v for v in vals if v]
