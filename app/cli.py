"""The ``searchstats`` command: serve, migrate, manage accounts, their keys and engines, forget and
prune, import and export."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from app.cli_bulk import INTERRUPTED
from app.cli_bulk import add_commands as add_bulk_commands
from app.errors import BadParams, SearchStatsError
from app.http.access_log import log_config
from app.services import accounts, privacy
from app.services.metrics import MULTIPROCESS_ENV
from app.settings import Settings
from app.storage.database import Database, open_database
from app.storage.migrate import SchemaState, upgrade_to_head
from app.terminal import printable

# Named, not __name__: run as ``python -m app.cli`` the module is __main__, and its lines would
# say so.
log = logging.getLogger("app.cli")

T = TypeVar("T")
DRIVERS = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})
# How long uvicorn's supervisor waits for a worker to answer its health ping before it kills the
# worker and starts another. A worker answers only once its interpreter has imported the service
# (1.5 s on an idle core, over 6 s on a busy machine or a CPU-limited container): at uvicorn's
# default of 5 s such workers were killed and replaced, as slow, again and again.
WORKER_PING_SECONDS = 60


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        # The help of the command named (searchstats key: its create and revoke), else the whole.
        getattr(args, "group", parser).print_help()
        return 2
    try:
        settings = Settings()
    except ValidationError as error:
        return _fail(_settings_problem(error))
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        _check_database(settings, creates=args.creates_database)
        return handler(args, settings)
    except SearchStatsError as error:
        return _fail(error.message)
    except KeyboardInterrupt:  # Ctrl-C: what ran is the command's own, no traceback to read
        print("searchstats: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        if isinstance(error, OSError) and error.filename is not None:
            # A file of ours (each command names its own files; this is the rest of them).
            return _fail(f"cannot use {error.filename}: {error.strerror or error}")
        # One clear line, not a traceback: the usual cause is a wrong URL or a server that is down.
        return _fail(
            f"cannot use the database at {_shown(settings.database_url)}: {_reason(error)}"
        )


def _fail(message: str) -> int:
    print(f"searchstats: error: {printable(message)}", file=sys.stderr)
    return 1


def _settings_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    name = "SEARCHSTATS_" + "_".join(str(part) for part in problem["loc"]).upper()
    return f"invalid setting {name}: {problem['msg']}"


def _check_database(settings: Settings, *, creates: bool) -> None:
    """The URL is one the service can use; a SQLite file exists, unless the command creates it."""
    url = settings.database_url
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if parsed is None or parsed.drivername not in DRIVERS:
        raise BadParams(
            "SEARCHSTATS_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    if parsed.host and "@" in parsed.host:
        # An '@' left in a password ends it there: the rest would be taken for the host, and
        # shown as the host in every error about connecting.
        raise BadParams(
            "SEARCHSTATS_DATABASE_URL has an '@' after the user's: write an '@' of the user "
            "name or password as %40"
        )
    path = settings.sqlite_file
    if path is None:
        if settings.is_sqlite:
            # Each connection would open a database of its own: serve's pool, empty, unready.
            raise BadParams(
                "SEARCHSTATS_DATABASE_URL names a database in memory, which every connection "
                "sees empty: name a file (sqlite+aiosqlite:///./searchstats.db)"
            )
        return
    # Said here, because aiosqlite failing to open a file can also print a thread's traceback.
    if not path.parent.is_dir():
        raise BadParams(f"cannot use the database at {url}: folder {path.parent} does not exist")
    if path.is_dir():
        raise BadParams(f"cannot use the database at {url}: {path} is a folder")
    if not creates and not path.exists():
        # Run from another folder, the default URL names a file that is not there: a command
        # would create an empty database, and forget or prune nothing in the service's.
        raise BadParams(
            f"no database at {path.absolute()}: run searchstats in the service's folder or set "
            "SEARCHSTATS_DATABASE_URL (searchstats migrate creates a new database)"
        )


def _shown(url: str) -> str:
    """The URL without its password."""
    return make_url(url).render_as_string(hide_password=True)


def _reason(error: BaseException) -> str:
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="searchstats",
        description="Serve searchstats, migrate its database, manage accounts, their API keys "
        "and engines, forget a user, prune old events, import and export events.",
    )
    # Only serve and migrate may create a SQLite database; the others need the service's own.
    parser.set_defaults(creates_database=False)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="apply pending migrations, then serve HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--workers", type=_positive, default=1)
    serve.set_defaults(handler=_serve, creates_database=True)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(handler=_migrate, creates_database=True)

    account_group = commands.add_parser("account", help="manage accounts")
    account_group.set_defaults(group=account_group)
    account = account_group.add_subparsers(title="commands")
    create_account = account.add_parser("create", help="create an account; prints its API key")
    create_account.add_argument("name")
    create_account.set_defaults(handler=_create_account)

    key_group = commands.add_parser("key", help="rotate and revoke API keys")
    key_group.set_defaults(group=key_group)
    key = key_group.add_subparsers(title="commands")
    create_key = key.add_parser("create", help="give an account one more API key; prints it")
    create_key.add_argument("account")
    create_key.set_defaults(handler=_create_key)
    revoke_key = key.add_parser("revoke", help="delete an API key; prints its account's name")
    revoke_key.add_argument("api_key", metavar="KEY")
    revoke_key.set_defaults(handler=_revoke_key)

    engine_group = commands.add_parser("engine", help="manage search engines")
    engine_group.set_defaults(group=engine_group)
    engine = engine_group.add_subparsers(title="commands")
    create_engine = engine.add_parser("create", help="add an engine; prints its hashid")
    create_engine.add_argument("account")
    create_engine.add_argument("--hashid", help="32 lowercase hex characters (default: random)")
    create_engine.add_argument("--name", default="")
    create_engine.set_defaults(handler=_create_engine)

    forget = commands.add_parser(
        "forget-user", help="delete every event of a user (its userId); prints how many"
    )
    forget.add_argument("user_id", metavar="USER_ID")
    forget.add_argument("--account", help="only in this account's engines (default: every account)")
    forget.set_defaults(handler=_forget_user)

    prune = commands.add_parser(
        "prune", help="delete raw events older than DAYS days (rollups are kept); prints how many"
    )
    prune.add_argument("--older-than", type=_positive, required=True, metavar="DAYS")
    prune.set_defaults(handler=_prune)

    add_bulk_commands(commands)  # import, export
    return parser


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _port(value: str) -> int:
    # uvicorn would take 99999 and listen on 34463 (its remainder by 65536), saying 99999.
    number = int(value)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError("must be 1 to 65535")
    return number


def _with_database(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        database = open_database(settings, pooled=False)
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(run())


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    found = _with_database(settings, lambda database: upgrade_to_head(database, refuse_newer=True))
    if found.state is SchemaState.OK:
        print("database is up to date", file=sys.stderr)
    else:
        before = ", ".join(found.revisions) or "an empty database"
        print(f"migrated {before} to {', '.join(found.heads)}", file=sys.stderr)
    return 0


def _create_account(args: argparse.Namespace, settings: Settings) -> int:
    async def work(database: Database) -> str:
        await upgrade_to_head(database)
        vault = await accounts.service_vault(database=database, settings=settings)
        created = await accounts.create_account(database=database, vault=vault, name=args.name)
        return created.api_key

    print(_with_database(settings, work))
    return 0


def _create_key(args: argparse.Namespace, settings: Settings) -> int:
    async def work(database: Database) -> str:
        await upgrade_to_head(database)
        vault = await accounts.service_vault(database=database, settings=settings)
        return await accounts.add_api_key(database=database, vault=vault, account=args.account)

    print(_with_database(settings, work))
    return 0


def _revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    async def work(database: Database) -> str:
        await upgrade_to_head(database)
        return await accounts.revoke_api_key(database=database, api_key=args.api_key)

    print(_with_database(settings, work))
    return 0


def _create_engine(args: argparse.Namespace, settings: Settings) -> int:
    async def work(database: Database) -> str:
        await upgrade_to_head(database)
        engine = await accounts.create_engine(
            database=database, account=args.account, hashid=args.hashid, name=args.name
        )
        return engine.hashid

    print(_with_database(settings, work))
    return 0


def _forget_user(args: argparse.Namespace, settings: Settings) -> int:
    async def work(database: Database) -> int:
        await upgrade_to_head(database)
        return await privacy.forget_user_everywhere(
            database=database, user_id=args.user_id, account=args.account
        )

    print(_with_database(settings, work))
    return 0


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    async def work(database: Database) -> int:
        await upgrade_to_head(database)
        return await privacy.prune(database=database, older_than_days=args.older_than)

    print(_with_database(settings, work))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    async def prepare(database: Database) -> accounts.Bootstrap | None:
        await upgrade_to_head(database)
        # Checked before serving, once for every worker: they read the same secret.
        vault = await accounts.service_vault(database=database, settings=settings)
        created = await accounts.bootstrap(database=database, vault=vault)
        anonymous = settings.anonymous_engine
        if await accounts.engine_missing(database=database, hashid=anonymous):
            # Not refused: the engine may be created next; said, as every DSpace event is a 404.
            log.warning(
                "SEARCHSTATS_ANONYMOUS_ENGINE names engine %s, which does not exist: anonymous "
                "DSpace events are answered 404 not_found until it is created "
                "(searchstats engine create ACCOUNT --hashid %s)",
                anonymous,
                anonymous,
            )
        return created

    if not logging.root.handlers:  # left as it is where a host process set logging up
        # What is logged while preparing (the migrations, the warning above) goes out as
        # uvicorn will log once serving: JSON lines, read by the same log pipeline.
        logging.config.dictConfig(log_config(json=settings.log_format == "json"))
    created = _with_database(settings, prepare)
    if created is not None:
        print(
            "Created account 'default' with one search engine. Keep this key, it is shown once:\n"
            f"  api key: {created.account.api_key}\n"
            f"  hashid:  {created.engine.hashid}",
            flush=True,
        )
    with _shared_metrics(args.workers):
        _run_uvicorn(args, settings)
    return 0


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    # uvicorn shuts down gracefully on SIGTERM (in-flight requests finish, then the lifespan
    # flushes the write batch), then raises the signal again, to end "killed by SIGTERM". That
    # shutdown was clean: end with status 0, as service managers and scripts expect.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "app.main:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,  # the app believes X-Forwarded-For from trusted proxies only
        server_header=False,
        log_level="info",
        # Our access log names no client address (app.http.access_log); uvicorn's would.
        access_log=False,
        log_config=log_config(json=settings.log_format == "json"),
        ws_max_size=settings.max_body_bytes,
        timeout_worker_healthcheck=WORKER_PING_SECONDS,
        # httptools, with the request head bounded in size and time (app.http.request_heads).
        http="app.http.request_heads:BoundedHeadsProtocol",
    )


def _exit_cleanly(_signal: int, _frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


@contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """Several workers add their metrics up in one folder (prometheus_client's multiprocess mode).

    A folder the operator names in PROMETHEUS_MULTIPROC_DIR is used (made if missing), emptied of
    a previous run's values first; otherwise a fresh one is made, and removed when serving ends.
    """
    named = os.environ.get(MULTIPROCESS_ENV)
    if workers == 1 and not named:
        yield
        return
    if named:
        Path(named).mkdir(parents=True, exist_ok=True)  # else every worker fails as it starts
        for stale in Path(named).glob("*.db"):
            stale.unlink()
        yield
        return
    folder = tempfile.mkdtemp(prefix="searchstats-metrics-")
    os.environ[MULTIPROCESS_ENV] = folder
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
