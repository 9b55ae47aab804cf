"""The court's rules as a process holds them: deadlines (calendar and allowances), the
escalation policy, the key that signs room links, and the transparency log's signer. Read
and checked once at start-up (`load`), then handed down — `Deps.rules` to jobs,
`Context.rules` to flows — never kept in module state, so two courts' settings in one test
run cannot leak into each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.core.errors import ConfigError
from bot.core.settings import Settings
from bot.rules import deadlines, escalation
from bot.rules.accounts import Accounts
from bot.rules.deadlines import Deadlines
from bot.rules.escalation import Policy
from bot.rules.media import MediaLinks
from bot.rules.mediation import Rooms
from storage.transparency import Signer


@dataclass(frozen=True)
class Rulebook:
    deadlines: Deadlines
    escalation: Policy
    rooms: Rooms
    media: MediaLinks
    # Signs the transparency log's tree heads (storage.transparency); None: no key given
    # (settings built in code), so no heads are signed.
    signer: Signer | None = None
    # Which Official Account serves which court (MST_COURTS_FILE; bot.rules.accounts).
    accounts: Accounts = Accounts()


def load(
    *,
    secret_key: str,
    public_base_url: str,
    holidays_file: Path | None = None,
    rules_file: Path | None = None,
    signing_key: bytes | None = None,
    past_signing_keys: tuple[bytes, ...] = (),
    accounts: Accounts | None = None,
) -> Rulebook:
    """MST_HOLIDAYS_FILE and MST_RULES_FILE read and checked (a ConfigError names the
    variable); room and media links signed with keys from MST_SECRET_KEY; tree heads with
    MST_SIGNING_KEY's Ed25519 key."""
    working = deadlines.load(holidays_file=holidays_file, rules_file=rules_file)
    return Rulebook(
        working,
        escalation.load_policy(working),
        Rooms.from_secret(secret_key),
        MediaLinks(public_base_url, secret_key),
        _signer(signing_key, past_signing_keys),
        accounts or Accounts(),
    )


def _signer(signing_key: bytes | None, past: tuple[bytes, ...]) -> Signer | None:
    if signing_key is None:
        return None
    try:
        return Signer.from_private_bytes(signing_key, past)
    except ValueError:
        raise ConfigError(
            "MST_SIGNING_KEY must be a 32-byte Ed25519 private key, and each of "
            "MST_PAST_SIGNING_KEYS a 32-byte Ed25519 public key"
        ) from None


def of(settings: Settings) -> Rulebook:
    """The court's rules the settings name."""
    return load(
        secret_key=settings.secret_key,
        public_base_url=settings.public_base_url,
        holidays_file=settings.holidays_file,
        rules_file=settings.rules_file,
        signing_key=settings.signing_key,
        past_signing_keys=settings.past_signing_keys,
        accounts=Accounts.of(settings),
    )
