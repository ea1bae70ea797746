"""What every part shares: LiteLLM's version and constants, the log, keys and timestamps as LiteLLM stores them."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

VERSION = "1.109.1"
# LiteLLM's constants (litellm/constants.py, 1.109.1).
PROXY_ADMIN_NAME = "default_user_id"  # LITELLM_PROXY_ADMIN_NAME: the master key's user_id
MASTER_KEY_ALIAS = "litellm_proxy_master_key"  # LITELLM_PROXY_MASTER_KEY_ALIAS: the master key's api_key
MINIMUM_CUSTOM_KEY_LENGTH = 16
log = logging.getLogger("litellm-sim")


def hash_key(key: str) -> str:
    """The `token` LiteLLM stores for a key: sha256 over the whole string, `sk-` included."""
    return hashlib.sha256(key.encode()).hexdigest()


def abbreviate_key(key: str) -> str:
    """The `key_name` LiteLLM stores: `sk-...` and the key's last 4 characters."""
    return "sk-..." if len(key) < MINIMUM_CUSTOM_KEY_LENGTH else f"sk-...{key[-4:]}"


def utcnow() -> datetime:
    # Prisma stores naive UTC timestamps.
    return datetime.now(UTC).replace(tzinfo=None)


def aware(moment: datetime | None) -> datetime | None:
    """A stored (naive UTC) timestamp as Prisma hands it out: in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
