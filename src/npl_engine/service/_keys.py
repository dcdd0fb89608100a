"""API keys: created once, shown once, stored only as hashes.

A key reads ``npl_<id>_<secret>``: the id (8 hex digits) names the key in logs and decision
records; the secret (43 URL-safe characters, 256 random bits) never leaves the client. The key
file holds, per key, its id, a name, the sha256 of the whole key and when it was created. A
plain sha256 suffices: the secret is random and long, so there is nothing to guess from a
stolen hash that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from npl_engine.errors import NplError

__all__ = [
    "API_KEY_ENV",
    "KEYS_FILE_ENV",
    "ApiKeys",
    "create_key",
    "default_keys_file",
    "read_key_records",
]

#: Environment variable naming the key file.
KEYS_FILE_ENV = "NPL_API_KEYS_FILE"
#: Environment variable holding one key the service accepts (id ``env``), e.g. in a container.
API_KEY_ENV = "NPL_API_KEY"

_PREFIX = "npl_"


def default_keys_file() -> Path:
    """``$NPL_API_KEYS_FILE``, else ``$XDG_CONFIG_HOME/npl_engine/api_keys.json``."""
    env = os.environ.get(KEYS_FILE_ENV)
    if env:
        return Path(env).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "npl_engine" / "api_keys.json"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_key_records(path: str | Path) -> list[dict[str, Any]]:
    """The key file's records (``id``, ``name``, ``sha256``, ``created_at``); [] if no file."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        records = raw["keys"]
        if not all(isinstance(r, dict) and {"id", "sha256"} <= set(r) for r in records):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as exc:
        msg = f"{path}: not an npl_engine key file (expected {{'keys': [...]}})"
        raise NplError(msg) from exc
    return list(records)


def create_key(path: str | Path, *, name: str) -> tuple[str, str]:
    """Create a key, add its hash to the key file, and return ``(key id, key)``.

    The key itself is returned once and stored nowhere. The file is replaced atomically and
    readable by its owner only.
    """
    path = Path(path)
    records = read_key_records(path)
    taken = {r["id"] for r in records}
    key_id = secrets.token_hex(4)
    while key_id in taken:
        key_id = secrets.token_hex(4)
    key = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    records.append(
        {
            "id": key_id,
            "name": name,
            "sha256": _hash(key),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"keys": records}, indent=2) + "\n")
    tmp.replace(path)
    return key_id, key


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The keys a running service accepts: key id → sha256 of the key."""

    hashes: dict[str, str]

    @classmethod
    def load(cls, path: str | Path | None, *, env_key: str | None = None) -> ApiKeys:
        """Keys from a key file (if it exists) and from ``NPL_API_KEY`` (id ``env``)."""
        hashes = {r["id"]: r["sha256"] for r in read_key_records(path)} if path else {}
        env_key = env_key if env_key is not None else os.environ.get(API_KEY_ENV)
        if env_key:
            hashes["env"] = _hash(env_key)
        return cls(hashes=hashes)

    def check(self, key: str | None) -> str | None:
        """The id of ``key`` if it is valid, else ``None`` (constant-time comparison)."""
        if not key:
            return None
        digest = _hash(key)
        key_id = key[len(_PREFIX) :].split("_", 1)[0] if key.startswith(_PREFIX) else ""
        candidates = [key_id] if key_id in self.hashes else []
        if "env" in self.hashes:
            candidates.append("env")
        for candidate in candidates:
            if hmac.compare_digest(self.hashes[candidate], digest):
                return candidate
        return None
