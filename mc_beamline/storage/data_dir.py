"""A data directory: where a beamline session stores everything, and its keys.

::

    <root>/tiled/catalog.db      SQLite catalog (metadata, run structure, data-source records)
    <root>/tiled/catalog_uri     optional: URI of a PostgreSQL catalog used instead (mode 0600)
    <root>/tiled/tables.sqlite   SQLite tabular storage (event tables written by TiledWriter)
    <root>/tiled/data/           Tiled writable file storage (zarr arrays written by TiledWriter)
    <root>/tiled/api_key         the server's single-user API key (mode 0600, reused on restart)
    <root>/tiled/readonly_keys   SHA-256 digests of read-only API keys, one per line (mode 0600)
    <root>/detector/             detector HDF5 files; readable storage, so Tiled serves them
    <root>/queue/redis_password  password of the data directory's Redis (mode 0600, reused)
    <root>/queue/zmq_private_key the RE Manager's 0MQ CURVE private key (mode 0600, reused)
    <root>/queue/zmq_public_key  its public key: what a queue client needs (mode 0600, reused)

The catalog is the data directory's SQLite file unless the data directory names another
catalog database (`DataDir.set_catalog_uri`, e.g. ``postgresql://user:pass@host:5432/db``
for a beamline where many processes read and write at once): then every server started for
that data directory uses that database. Event tables stay in the data directory's SQLite
tabular storage and arrays in its file storage with either catalog.

Only the owner may enter ``tiled/`` and ``detector/`` (mode 0700) and read the files in
``tiled/`` (0600): the catalog and the frames are reached through the server and its key,
not around it. Every key, password and file holding one is written by `write_private`
(mode 0600 from its creation, atomically); a generated secret by `stored_secret`, once.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CATALOG_SCHEMES = ("sqlite", "postgresql", "postgres")
"""Database schemes a catalog URI may use (an optional ``+driver`` suffix is allowed)."""


def catalog_dialect(uri: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a catalog URI; ValueError for anything else.

    ``postgresql://``, ``postgres://`` and ``postgresql+asyncpg://`` are all PostgreSQL (the
    server adds the asyncpg driver when none is given).
    """
    scheme = str(uri).split("://", 1)[0].split("+", 1)[0].lower() if "://" in str(uri) else ""
    if scheme not in CATALOG_SCHEMES:
        raise ValueError(f"Catalog URI {redact_uri(str(uri))} is neither sqlite:/// nor postgresql://.")
    return "postgresql" if scheme.startswith("postgres") else "sqlite"


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URI>"


def redact_password(text: str, uri: str) -> str:
    """``text`` (e.g. a database driver's error message about ``uri``) with the URI's password
    replaced by ``***``."""
    from urllib.parse import urlsplit

    try:
        password = urlsplit(uri).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def write_private(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` with mode 0600 from the start, atomically; return whether it was written.

    The text goes to a new 0600 file beside ``path`` that is then renamed (``replace``) or
    linked (not ``replace``: an existing ``path`` is kept and False returned), so no reader
    ever sees a partial file and no other user a readable one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def stored_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in ``path``; on first use ``make()`` generates it and `write_private` stores it.

    Two processes that generate it at once agree: the first file written wins.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, make() + "\n", replace=False)
    return path.read_text().strip()


@dataclass(frozen=True)
class DataDir:
    """Layout of a data directory (all paths absolute).

    Parameters
    ----------
    root
        Top directory; relative paths are resolved against the working directory and
        symbolic links are resolved, so paths stored in the catalog are canonical.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @property
    def tiled(self) -> Path:
        """Directory of the Tiled server's own files."""
        return self.root / "tiled"

    @property
    def catalog(self) -> Path:
        """SQLite catalog database file."""
        return self.tiled / "catalog.db"

    @property
    def tables(self) -> Path:
        """SQLite tabular storage file (event tables)."""
        return self.tiled / "tables.sqlite"

    @property
    def data(self) -> Path:
        """Tiled writable file storage (arrays written through Tiled)."""
        return self.tiled / "data"

    @property
    def detector(self) -> Path:
        """Where detectors write their HDF5 files; served by Tiled as readable storage."""
        return self.root / "detector"

    @property
    def api_key_file(self) -> Path:
        """File holding the server's API key."""
        return self.tiled / "api_key"

    @property
    def readonly_keys_file(self) -> Path:
        """File of SHA-256 digests of the read-only API keys (see `create_readonly_key`)."""
        return self.tiled / "readonly_keys"

    @property
    def queue(self) -> Path:
        """Directory of the queue's files (its Redis data, logs, keys, state)."""
        return self.root / "queue"

    @property
    def redis_password_file(self) -> Path:
        """File holding the password of the data directory's Redis (see `redis_password`)."""
        return self.queue / "redis_password"

    @property
    def zmq_private_key_file(self) -> Path:
        """File holding the RE Manager's 0MQ CURVE private key (see `zmq_keys`)."""
        return self.queue / "zmq_private_key"

    @property
    def zmq_public_key_file(self) -> Path:
        """File holding the RE Manager's 0MQ CURVE public key: give it to a queue client."""
        return self.queue / "zmq_public_key"

    @property
    def sqlite_catalog_uri(self) -> str:
        """URI of the data directory's own SQLite catalog file."""
        return f"sqlite:///{self.catalog}"

    @property
    def catalog_uri_file(self) -> Path:
        """File naming another catalog database (see `set_catalog_uri`); absent: SQLite."""
        return self.tiled / "catalog_uri"

    @property
    def catalog_uri(self) -> str:
        """Catalog URI of this data directory: the one set by `set_catalog_uri`, else its SQLite file."""
        path = self.catalog_uri_file
        if path.is_file():
            uri = path.read_text().strip()
            if uri:
                return uri
        return self.sqlite_catalog_uri

    def set_catalog_uri(self, uri: str | None) -> DataDir:
        """Make ``uri`` (e.g. ``postgresql://user:pass@host:5432/db``) this data directory's catalog.

        The URI is kept in ``tiled/catalog_uri`` (mode 0600: it may hold a password); None or
        the SQLite URI of the data directory goes back to the SQLite catalog. The database
        itself must exist; the server initialises Tiled's tables in it on first use.
        Returns self.
        """
        path = self.catalog_uri_file
        if uri is None or uri == self.sqlite_catalog_uri:
            path.unlink(missing_ok=True)
            return self
        catalog_dialect(uri)
        self.tiled.mkdir(parents=True, exist_ok=True)
        write_private(path, uri.strip() + "\n")
        return self

    def has_catalog(self) -> bool:
        """Whether this data directory has a catalog (its SQLite file, or a catalog URI set)."""
        return self.catalog_uri != self.sqlite_catalog_uri or (
            self.catalog.is_file() and self.catalog.stat().st_size > 0
        )

    def create(self) -> DataDir:
        """Create the directories if missing and close them to other users; return self.

        ``tiled/`` and ``detector/`` get mode 0700 and the files directly in ``tiled/``
        (catalog, tables, keys) 0600, also in a data directory made before this rule.
        """
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in (self.data, self.detector):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # SQLite would create the event-table file 0644 on the first write; an empty file is a new database
        os.close(os.open(self.tables, os.O_WRONLY | os.O_CREAT, 0o600))
        return self.restrict()

    def restrict(self) -> DataDir:
        """Give ``tiled/`` and ``detector/`` mode 0700 and the files in ``tiled/`` 0600; return self.

        Run again once a server has created its catalog files (SQLite creates them 0644).
        """
        for directory in (self.tiled, self.detector):
            if directory.is_dir():
                os.chmod(directory, 0o700)
        if self.tiled.is_dir():
            for path in self.tiled.iterdir():
                if path.is_file() and not path.is_symlink():
                    os.chmod(path, 0o600)
        return self

    def create_readonly_key(self) -> str:
        """A new read-only API key (hex, 256 bit); its digest is added to `readonly_keys_file`.

        The key itself is not stored: give it to whoever only replays runs.
        """
        from mc_beamline.storage.key_guard import key_digest

        key = secrets.token_hex(32)
        self.tiled.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.readonly_keys_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(key_digest(key) + "\n")
        return key

    def api_key(self) -> str:
        """Return the API key, generating it (hex, 256 bit, file mode 0600) on first use."""
        return stored_secret(self.api_key_file, lambda: secrets.token_hex(32))

    def redis_password(self) -> str:
        """Return the password of the data directory's Redis, generating it (hex, 256 bit,
        file mode 0600) on first use."""
        return stored_secret(self.redis_password_file, lambda: secrets.token_hex(32))

    def zmq_keys(self) -> tuple[str, str]:
        """(public, private) 0MQ CURVE keys of the RE Manager, generated (files mode 0600) on first use.

        The public key is derived from the private one; a public key file that does not
        belong to the private key is a ValueError (one sentence).
        """
        from bluesky_queueserver import generate_zmq_keys, generate_zmq_public_key

        private = stored_secret(self.zmq_private_key_file, lambda: generate_zmq_keys()[1])
        try:
            derived = generate_zmq_public_key(private)
        except ValueError:
            raise ValueError(f"The 0MQ private key in {self.zmq_private_key_file} is not a 40-character z85 key; "
                             "delete it and its public key file to generate a new pair.") from None
        public = stored_secret(self.zmq_public_key_file, lambda: derived)
        if public != derived:
            raise ValueError(f"The 0MQ public key in {self.zmq_public_key_file} does not belong to the private key "
                             f"in {self.zmq_private_key_file}; delete it to write the right one.")
        return public, private

    def zmq_public_key(self) -> str:
        """The RE Manager's 0MQ public key from `zmq_public_key_file` (what a client needs);
        a missing or malformed file is a ValueError (one sentence)."""
        from bluesky_queueserver import validate_zmq_key

        try:
            key = self.zmq_public_key_file.read_text().strip()
        except OSError as exc:
            raise ValueError(f"The queue's 0MQ public key cannot be read from {self.zmq_public_key_file} "
                             f"({exc.strerror or exc}); start the queue once or copy the key file there.") from None
        try:
            validate_zmq_key(key)
        except ValueError:
            raise ValueError(f"The file {self.zmq_public_key_file} does not hold a 0MQ public key "
                             "(40 z85 characters).") from None
        return key
