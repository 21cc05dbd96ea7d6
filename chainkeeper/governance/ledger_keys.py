"""The audit ledger's HMAC keys: held outside the database, read once per process.

A keyed ledger entry's hash is HMAC-SHA256(key, previous hash + the entry), so whoever
can write the database but does not hold the key cannot append, edit or rehash entries
without ``verify`` noticing. The keys live in a keyring file (setting
``ledger_key_file``, default ``<home>/secrets/ledger.keys``), created 0600 in a 0700
folder when the ledger first needs one, or in the setting ``ledger_key``
(``CHAINKEEPER_LEDGER_KEY``) for hosts whose home folder is shared.

The file holds one key a line, ``<key id> <64 hex digits>``; the last line is the key new
entries use, earlier lines stay so that the entries made with them still verify. A key's
id is derived from the key (``key_id_of``), so an id names exactly one secret. Rotation
(``add_key``, ``chainkeeper audit rotate-key``) appends a line; nothing ever removes one.

A process reads its keyring once (``LedgerKeys``, kept on the store with ``Database.state``
by ``use_ledger_keys``) and reads it again only when the ledger names a key it does not
hold: another process rotated.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chainkeeper.core.db import Database
from chainkeeper.core.errors import ConfigError
from chainkeeper.core.settings import Settings

__all__ = ["Keyring", "LedgerKey", "LedgerKeys", "add_key", "key_file_of", "key_id_of", "ledger_keys_of",
           "new_secret", "use_ledger_keys"]

KEY_BYTES = 32
LEDGER_KEYS_STATE = "governance.ledger_keys"
ENV_NAME = "CHAINKEEPER_LEDGER_KEY"
_HEADER = """\
# Chainkeeper audit-ledger keys (HMAC-SHA256). One key a line: <key id> <secret, 64 hex digits>.
# The last line is the key new entries use; keep every earlier line, the entries made with it
# are verified with it. Add a key with 'chainkeeper audit rotate-key', never by editing or
# replacing this file. Back it up apart from the database: without it the ledger cannot be verified.
"""


def key_id_of(secret: bytes) -> str:
    """The id of a key: 16 hex digits of a hash of it (pure; reveals nothing usable of the key)."""
    return hashlib.sha256(b"chainkeeper ledger key\n" + secret).hexdigest()[:16]


def new_secret() -> bytes:
    """A fresh random key."""
    return secrets.token_bytes(KEY_BYTES)


@dataclass(frozen=True)
class LedgerKey:
    id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    """The keys a process knows, by id, and the one new entries use."""

    keys: Mapping[str, bytes] = field(repr=False)
    current: LedgerKey
    source: str  # where the keys came from, for messages: a path or the environment variable

    def secret(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)


def parse_keyring(text: str, source: str) -> Keyring:
    """A keyring from the file's text (pure).

    Raises:
        ConfigError: a malformed line, an id that does not match its key, or no key at all.
    """
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        secret = _secret_of(parts[-1]) if len(parts) == 2 else None
        if secret is None or key_id_of(secret) != parts[0]:
            raise ConfigError(f"Line {number} of the ledger key file {source} is not '<key id> <64 hex digits>' "
                              "with the id of that key.",
                              hint="Restore the file from your backup; never edit keys by hand (add one with "
                              "'chainkeeper audit rotate-key').")
        keys[parts[0]] = secret
    return _keyring(keys, source)


def parse_key_setting(value: str) -> Keyring:
    """A keyring from the ``ledger_key`` setting: hex secrets, comma-separated, the last current (pure).

    Raises:
        ConfigError: a value that is not 64 hex digits.
    """
    keys: dict[str, bytes] = {}
    for number, part in enumerate(p.strip() for p in value.split(",") if p.strip()):
        secret = _secret_of(part)
        if secret is None:
            raise ConfigError(f"Key {number + 1} of {ENV_NAME} is not 64 hex digits.",
                              hint="Give each key as 64 hex digits, comma-separated, the current one last; "
                              "'chainkeeper audit rotate-key' prints a new one.")
        keys[key_id_of(secret)] = secret
    return _keyring(keys, ENV_NAME)


def _secret_of(text: str) -> bytes | None:
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        return None
    return secret if len(secret) == KEY_BYTES else None


def _keyring(keys: dict[str, bytes], source: str) -> Keyring:
    if not keys:
        raise ConfigError(f"The ledger keys in {source} hold no key.",
                          hint="Restore the key file from your backup, or remove the empty file so that a new "
                          "key is made (only for a ledger that has no keyed entry yet).")
    current = list(keys)[-1]
    return Keyring(keys=dict(keys), current=LedgerKey(current, keys[current]), source=source)


def key_file_of(settings: Settings) -> Path:
    """Where the key file is: the setting, or ``<home>/secrets/ledger.keys``."""
    return (settings.ledger_key_file or settings.home / "secrets" / "ledger.keys").expanduser().resolve()


def read_key_file(path: Path) -> Keyring | None:
    """The keyring in ``path``, or None when there is no such file.

    Raises:
        ConfigError: others than its owner may read or write it, or it cannot be read or parsed.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"The ledger key file {path} may be read or changed by other users (mode "
                          f"{stat.S_IMODE(mode):o}): whoever reads it can forge ledger entries.",
                          hint=f"Run: chmod 600 {path} (or keep the key in {ENV_NAME}).")
    try:
        return parse_keyring(path.read_text(encoding="ascii"), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The ledger key file {path} cannot be read: {exc}.",
                          hint="Check the file's owner: it must be the user Chainkeeper runs as.") from None


def _write_new(path: Path, text: str) -> Path:
    """A file next to ``path`` holding ``text``, created 0600 and synced; its folder made 0700."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)  # mkdir's mode is filtered by the umask
    temporary = folder / f".{path.name}.{secrets.token_hex(6)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return temporary


def create_key_file(path: Path) -> Keyring:
    """A new key file with one new key; if another process made one first, that one.

    Raises:
        ConfigError: the folder cannot be written.
    """
    secret = new_secret()
    try:
        temporary = _write_new(path, f"{_HEADER}{key_id_of(secret)} {secret.hex()}\n")
        try:
            os.link(temporary, path)  # atomic and exclusive: never replaces a key file
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    except OSError as exc:
        raise ConfigError(f"The ledger key file {path} cannot be created: {exc}.",
                          hint="Make its folder writable by the user Chainkeeper runs as, or set ledger_key_file "
                          "(CHAINKEEPER_LEDGER_KEY_FILE) to a writable place.") from None
    found = read_key_file(path)
    assert found is not None
    return found


def add_key(path: Path) -> tuple[LedgerKey, LedgerKey | None]:
    """Append a new key to the key file (made if missing); it becomes the current key.

    Returns:
        The new key and the one it replaces as current (None for a new file).

    Raises:
        ConfigError: the file cannot be read, parsed or written.
    """
    ring = read_key_file(path)
    if ring is None:
        made = create_key_file(path)
        return made.current, None
    secret = new_secret()
    text = path.read_text(encoding="ascii")
    text = (text if text.endswith("\n") else text + "\n") + f"{key_id_of(secret)} {secret.hex()}\n"
    try:
        temporary = _write_new(path, text)
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"The ledger key file {path} cannot be written: {exc}.",
                          hint="Run the command as the user Chainkeeper runs as.") from None
    return LedgerKey(key_id_of(secret), secret), ring.current


class LedgerKeys:
    """A process's ledger keys: loaded on first use, cached, reloaded when the ledger names a new key."""

    def __init__(self, *, path: Path | None, setting: str | None) -> None:
        self.path = path
        self.setting = setting
        self._ring: Keyring | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return ENV_NAME if self.setting is not None else str(self.path)

    def keyring(self, *, reload: bool = False) -> Keyring | None:
        """The keys, or None when there is no key file yet (never creates one)."""
        with self._lock:
            if self._ring is None or reload:
                self._ring = self._load()
            return self._ring

    def _load(self) -> Keyring | None:
        if self.setting is not None:
            return parse_key_setting(self.setting)
        assert self.path is not None
        return read_key_file(self.path)

    def knows(self, key_id: str) -> Keyring | None:
        """The keyring if it holds ``key_id`` (read again once if not), else None."""
        ring = self.keyring()
        if ring is not None and ring.secret(key_id) is not None:
            return ring
        ring = self.keyring(reload=True)
        return ring if ring is not None and ring.secret(key_id) is not None else None

    def signing_key(self, last_key_id: str | None) -> LedgerKey:
        """The key a new entry is made with, after an entry made with ``last_key_id``.

        The key file is created only while the ledger has no keyed entry: a missing file
        behind a keyed ledger is a misconfiguration (or a loss) to be fixed, not papered over
        with a new key that would fork the chain.

        Raises:
            ConfigError: the key file is missing or is not this ledger's (it lacks the key of
                the last entry), or cannot be read or created.
        """
        if last_key_id is None:
            ring = self.keyring()
            if ring is None:
                assert self.path is not None
                with self._lock:
                    self._ring = ring = create_key_file(self.path)
            return ring.current
        ring = self.knows(last_key_id)
        if ring is not None:
            return ring.current
        if self.keyring() is None:
            raise ConfigError(f"The ledger key file {self.where} is missing, and the ledger's last entry was made "
                              f"with key {last_key_id}: no entry can be added without it.",
                              hint=f"Restore the key file from your backup to {self.where} (or point "
                              "ledger_key_file / CHAINKEEPER_LEDGER_KEY at it), then try again.")
        raise ConfigError(f"The ledger keys in {self.where} do not hold key {last_key_id}, which made the ledger's "
                          "last entry: they are not this ledger's keys.",
                          hint="Restore this store's key file from your backup (or point ledger_key_file / "
                          "CHAINKEEPER_LEDGER_KEY at it); add keys only with 'chainkeeper audit rotate-key'.")


def use_ledger_keys(db: Database, settings: Settings) -> LedgerKeys:
    """Give the store the ledger keys named by ``settings`` (entry points call this once)."""
    setting = settings.ledger_key.get_secret_value() if settings.ledger_key is not None else None
    return db.state(LEDGER_KEYS_STATE,
                    lambda: LedgerKeys(path=None if setting else key_file_of(settings), setting=setting))


def ledger_keys_of(db: Database) -> LedgerKeys:
    """The ledger keys given to this store.

    Raises:
        ConfigError: none were given (the store was opened without its settings).
    """
    def unconfigured() -> LedgerKeys:
        raise ConfigError("No ledger key is configured for this store.",
                          hint="Open the store with chainkeeper.chain.open_context (or call "
                          "governance.ledger_keys.use_ledger_keys(db, settings) once after opening it).")

    return db.state(LEDGER_KEYS_STATE, unconfigured)

