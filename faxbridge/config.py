"""The configuration: one YAML file read once into frozen dataclasses, every error naming its key path.

``load_config(path)`` reads and validates; ``parse_config(data, base_dir)`` validates an already
loaded mapping.  Both raise ``ConfigError(path, problem)`` and never exit.  Defaults live in the
dataclass fields below and nowhere else; ``config.example.yaml`` documents every key (a test keeps
the two in step).  Conventions:

* durations are float seconds (``90s``, ``5m``, ``2h``, ``1d``, ``500ms``, ``1h30m`` or a number);
* sizes are int bytes (``10MB`` = 10,000,000, ``512KiB`` = 524,288, or an integer);
* relative paths are resolved against the config file's directory, except ``sent_dir`` and
  ``failed_dir`` (against their hotfolder) and ``smtp.archive_dir``/``smtp.spool_dir`` (against
  ``state_dir``); after loading every path is absolute;
* secrets are given by reference (a file, an environment variable, a systemd credential) and held
  in ``Secret``, whose repr is ``***``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import ipaddress
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import phonenumbers
import yaml

from faxbridge.approval import HoldRule, parse_rules
from faxbridge.errors import ConfigError, NumberError
from faxbridge.model import JobType
from faxbridge.convert.settings import CONVERTIBLE_AS_IS, ColourMode, ConvertSettings, ImageGrouping, Paper
from faxbridge.documents import DocumentLimits
from faxbridge.numbers import ANY_COUNTRY, NumberPolicy, is_known_region

__all__ = [
    "DEFAULT_WSDL",
    "AlertsConfig",
    "ApprovalConfig",
    "AuthConfig",
    "BodyMode",
    "Config",
    "ConsoleConfig",
    "ConsoleRole",
    "ConsoleUser",
    "FrozenDict",
    "DocumentsConfig",
    "FaxdeConfig",
    "HostPort",
    "HotfolderConfig",
    "InboundConfig",
    "InboundRoute",
    "JournalConfig",
    "LogLevel",
    "LoggingConfig",
    "MetricsConfig",
    "MultiRecipient",
    "NumbersConfig",
    "RateLimit",
    "RelayConfig",
    "RetryConfig",
    "Secret",
    "SmtpConfig",
    "StatusConfig",
    "TlsConfig",
    "check_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "validate_options",
]

DEFAULT_WSDL: Final = "https://ccs.fax.de/xmlws.exe?wsdl/IntfXMLWS"

# systemd's LoadCredential=faxde-password:/path puts the file here (systemd.exec(5), "Credentials").
CREDENTIAL_NAME: Final = "faxde-password"


# --------------------------------------------------------------------------------------------------
# Value types


class Secret:
    """A password or hash that must never reach a log, a repr or an error message."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source  # where it came from, safe to show ("file /etc/faxbridge/password")

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:  # dataclasses.asdict copies leaves
        return self

    def __reduce__(self) -> Any:  # never pickled by accident into a file or a queue
        raise TypeError("a Secret cannot be pickled")


_K = TypeVar("_K")
_V = TypeVar("_V")


class FrozenDict(dict[_K, _V]):
    """A mapping in the frozen config: a dict (so dataclasses.asdict works) that cannot change."""

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("the configuration is read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __copy__(self) -> FrozenDict[_K, _V]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict[_K, _V]:
        return self

    def __reduce__(self) -> Any:
        return (FrozenDict, (dict(self),))


@dataclass(frozen=True)
class HostPort:
    """An address to listen on or connect to; IPv6 hosts are kept without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class BodyMode(enum.StrEnum):
    """What the SMTP edge does with a mail's text body."""

    COVER = "cover"  # always send it as the fax note / cover page
    IGNORE = "ignore"  # never; only attachments are sent
    AUTO = "auto"  # only when it says more than a signature


class MultiRecipient(enum.StrEnum):
    """A mail to several fax recipients: one job each, or one job with a RecipientFile."""

    SEPARATE = "separate"
    COMBINED = "combined"


class WatchMode(enum.StrEnum):
    """How a hotfolder learns of new files."""

    AUTO = "auto"  # the platform's file events (inotify, FSEvents, …); polling where they fail
    EVENTS = "events"  # file events only; a folder that cannot have them waits for the rescan
    POLL = "poll"  # list the folder every poll_interval (network shares: NFS, SMB)


class LogLevel(enum.StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


# --------------------------------------------------------------------------------------------------
# The configuration, section by section.  Field defaults are the documented defaults.


def _derived() -> Any:
    """Marks a field that is computed by the loader, not a key of the YAML file."""
    return {"derived": True}


@dataclass(frozen=True)
class RetryConfig:
    """Transient SendJob failures are retried with exponential backoff."""

    max_attempts: int = 8
    initial_delay: float = 30.0
    max_delay: float = 3600.0


@dataclass(frozen=True)
class FaxdeConfig:
    account: str
    password: Secret
    wsdl: str = DEFAULT_WSDL  # a URL, or an absolute file path after loading
    endpoint: str | None = None  # overrides the service address in the WSDL
    timeout: float = 60.0  # read timeout of one call
    connect_timeout: float = 10.0
    concurrency: int = 4  # provider calls in parallel at most
    retry: RetryConfig = field(default_factory=RetryConfig)
    # After a SendJob whose outcome is unknown, re-send the identical request only within this
    # window, counted from when the first such request left (FAX.de answers -77 if it has the
    # first); later, the operator decides. 0: always the operator. FAX.de does not say how long
    # it recognises a twin: 30 s is a cautious guess (README, "How a job lives").
    reconcile_window: float = 30.0
    # Where FAX.de can reach the daemon's HTTP server for its status callback (STATURL): a JobId lost
    # with a SendJob answer is found again (README, "How a job lives"). None: no callback.
    callback_url: str | None = None


@dataclass(frozen=True)
class NumbersConfig:
    """How recipient numbers are read and which may be dialled; the defaults are NumberPolicy's."""

    default_country: str | None = NumberPolicy.default_country
    allowed_countries: frozenset[str] = NumberPolicy.allowed_countries

    def policy(self) -> NumberPolicy:
        return NumberPolicy(self.default_country, self.allowed_countries)


@dataclass(frozen=True)
class JournalConfig:
    duplicate_window: float = 86400.0  # the same documents to the same recipients are refused
    retention: float = 90 * 86400.0  # finished jobs are forgotten after this
    # None: SQLite in state_dir; a path (absolute once loaded): that SQLite file;
    # "postgresql://USER@HOST:PORT/DB?sslmode=…": PostgreSQL, libpq options passed through.
    url: str | None = None
    password: Secret | None = None  # PostgreSQL only; None: libpq's PGPASSFILE / ~/.pgpass
    node: str | None = None  # this daemon's name among the nodes sharing the journal; None: host name
    lease: float = 15.0  # a node silent this long is gone: its duties and SendJobs in flight pass on

    @property
    def is_postgresql(self) -> bool:
        return self.url is not None and self.url.startswith(_POSTGRESQL_SCHEMES)


@dataclass(frozen=True)
class DocumentsConfig:
    max_size: int = 20_000_000
    max_pages: int = 200

    def limits(self) -> DocumentLimits:
        return DocumentLimits(max_size=self.max_size, max_pages=self.max_pages)


@dataclass(frozen=True)
class HotfolderConfig:
    path: Path
    job_type: JobType = JobType.FAX
    recipient: str | None = None  # E.164 or a mail address; None: taken from the file name
    options: tuple[tuple[str, str], ...] = ()  # SendJob Options, as SendRequest.options
    sent_dir: Path = Path("sent")  # relative: inside path
    failed_dir: Path = Path("failed")
    settle_time: float = 2.0  # wait this long for a sidecar file after the document
    watch: WatchMode = WatchMode.AUTO
    polling: bool = False  # the older spelling of watch: poll (read, and kept equal to it)
    poll_interval: float = 5.0
    rescan_interval: float = 300.0  # periodic full rescan; 0 disables it
    text: str = ""  # default fax note / SMS text
    hold: tuple[HoldRule, ...] = ()  # approval rules: jobs from here wait for an approver
    report_pdf: bool = False  # write NAME.report.pdf (the send report) beside the status CSV
    # The top-level convert section with this folder's own keys on top (a folder for scans in bw).
    convert: ConvertSettings = field(default_factory=ConvertSettings)


@dataclass(frozen=True)
class StatusConfig:
    interval: float = 60.0  # JobStatus polling, backing off up to max_interval
    max_interval: float = 900.0


@dataclass(frozen=True)
class InboundRoute:
    """Received faxes to one of the account's numbers go their own way."""

    called_number: str  # E.164
    output: Path  # defaults to inbound.output
    pdf: bool  # defaults to inbound.pdf
    mail_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboundConfig:
    output: Path
    interval: float = 60.0
    max_per_run: int = 50
    filename: str = "{received:%Y%m%d-%H%M%S}_{originator}_{fax_id}.tif"
    pdf: bool = False  # also write a PDF next to the TIFF
    max_size: int = 50_000_000
    routes: tuple[InboundRoute, ...] = ()

    def route_for(self, called_number: str) -> InboundRoute | None:
        """The route for an E.164 called number, if one is configured."""
        for route in self.routes:
            if route.called_number == called_number:
                return route
        return None


# Fields the inbound file name template may use, with sample values to test a template with.
INBOUND_FILENAME_FIELDS: Final[Mapping[str, object]] = MappingProxyType(
    {
        "received": datetime(2024, 1, 31, 23, 59, 58, tzinfo=timezone.utc),
        "fax_id": 123456789,
        "originator": "+4940123456",
        "called_number": "+4930987654",
        "remote_id": "ACME GmbH",
        "pages": 3,
    }
)


@dataclass(frozen=True)
class RelayConfig:
    """The mail server reports and inbound faxes are sent through."""

    host: str
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: Secret | None = None


@dataclass(frozen=True)
class RateLimit:
    messages: int = 60
    per: float = 3600.0


@dataclass(frozen=True)
class TlsConfig:
    cert: Path | None = None
    key: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert is not None


@dataclass(frozen=True)
class AuthConfig:
    # user name → password hash ($pbkdf2-sha256$…), from users and password_file together
    users: Mapping[str, Secret] = field(default_factory=FrozenDict)
    password_file: Path | None = None  # lines "user:$pbkdf2-sha256$…"
    required: bool = False  # refuse mail from clients that did not authenticate


@dataclass(frozen=True)
class SmtpConfig:
    domains: Mapping[str, JobType]  # recipient domain → job type
    listen: HostPort = HostPort("127.0.0.1", 2525)
    allowed_senders: tuple[str, ...] = ()  # "*@example.com", "alice@example.com", "*@*.example.com"
    relay: RelayConfig | None = None  # None: no mail goes out (no reports by mail)
    report_from: str = "faxbridge@localhost"
    max_message_size: int = 25_000_000
    max_recipients: int = 10
    rate_limit: RateLimit | None = field(default_factory=RateLimit)  # per sender; None: no limit
    max_connections: int = 20
    idle_timeout: float = 60.0  # seconds without a command, or without a byte during DATA
    data_timeout: float = 600.0  # seconds one DATA transfer may take in all
    body: BodyMode = BodyMode.AUTO
    trim_body: bool = True  # the note ends before the signature and a quoted reply
    multi_recipient: MultiRecipient = MultiRecipient.SEPARATE
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    archive_dir: Path = Path("mail-archive")  # relative: inside state_dir
    spool_dir: Path = Path("spool")
    # sender pattern (alice@example.com, *@example.com) → approval rules for its mails' jobs
    hold: Mapping[str, tuple[HoldRule, ...]] = field(default_factory=FrozenDict)
    report_pdf: bool = False  # attach the send report PDF to the sender's report mail

    def job_type_for(self, domain: str) -> JobType | None:
        return self.domains.get(domain.lower().rstrip("."))

    def sender_allowed(self, address: str) -> bool:
        """True if ``address`` matches one of allowed_senders."""
        return any(_sender_matches(pattern, address) for pattern in self.allowed_senders)


@dataclass(frozen=True)
class PrintConfig:
    """The print channel (a CUPS queue hands print jobs to the daemon over a Unix socket)."""

    socket: Path = Path("/run/faxbridge/print.sock")  # the backend connects here (cups install reads it)
    spool_dir: Path = Path("print")  # relative: inside state_dir; documents wait here until sent
    failed_dir: Path = Path("print-failed")  # relative: inside state_dir; refused documents + .error.txt
    control_codes: bool = True  # read @@NUMBER …@@ codes from the documents
    allowed_users: tuple[str, ...] = ("*",)  # print user names that may send; "*" = everyone
    report_to: Mapping[str, str] = field(default_factory=FrozenDict)  # user → mail address; "*": "{user}@…"
    max_size: int = 50_000_000  # a larger print job is refused


@dataclass(frozen=True)
class ApprovalConfig:
    """Jobs held for an approver: rules for every channel, expiry, who is told."""

    hold: tuple[HoldRule, ...] = ()  # for every job, whatever channel it came from
    expiry: float = 0.0  # a held job not approved within this is rejected; 0: never
    notify: tuple[str, ...] = ()  # mailed (through smtp.relay) when a job is held
    link: str | None = None  # the console's held-job page, "{job}" replaced by the job id


@dataclass(frozen=True)
class AlertsConfig:
    """A mail to the admins when jobs stay stuck or FAX.de keeps failing; once per incident."""

    mail_to: tuple[str, ...]
    queued_after: float = 1800.0  # a job still queued (not sent) after this
    held_after: float = 4 * 3600.0  # a job still waiting for an approver after this
    unknown_after: float = 0.0  # a job whose SendJob outcome is unknown after this
    provider_failing_after: float = 600.0  # FAX.de unreachable this long
    interval: float = 60.0  # how often the thresholds are checked


@dataclass(frozen=True)
class MetricsConfig:
    listen: HostPort | None = None  # None: no metrics endpoint


class ConsoleRole(enum.StrEnum):
    """What a console user may do; each role may do everything the ones before it may."""

    VIEWER = "viewer"
    SENDER = "sender"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(ConsoleRole).index(self)


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    password_hash: Secret  # $scrypt$… from `faxbridge hash-password`
    role: ConsoleRole = ConsoleRole.VIEWER


@dataclass(frozen=True)
class ConsoleConfig:
    """The web console (issue 17), served by the daemon on its own address."""

    listen: HostPort = HostPort("127.0.0.1", 8025)
    tls: TlsConfig = field(default_factory=TlsConfig)
    users: tuple[ConsoleUser, ...] = ()
    session_lifetime: float = 8 * 3600.0  # a login lasts this long

    def user(self, name: str) -> ConsoleUser | None:
        return next((user for user in self.users if user.name == name), None)


@dataclass(frozen=True)
class LoggingConfig:
    level: LogLevel = LogLevel.INFO


@dataclass(frozen=True)
class Config:
    faxde: FaxdeConfig
    state_dir: Path = Path("/var/lib/faxbridge")
    numbers: NumbersConfig = field(default_factory=NumbersConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    convert: ConvertSettings = field(default_factory=ConvertSettings)
    hotfolders: tuple[HotfolderConfig, ...] = ()
    status: StatusConfig = field(default_factory=StatusConfig)
    inbound: InboundConfig | None = None  # None: inbound faxes are not collected
    smtp: SmtpConfig | None = None  # None: no SMTP server
    print: PrintConfig | None = None  # None: no print queue channel
    approval: ApprovalConfig = field(default_factory=ApprovalConfig)
    alerts: AlertsConfig | None = None  # None: no alert mails
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    console: ConsoleConfig | None = None  # None: no web console
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: Path | None = field(default=None, metadata=_derived())  # the file it was loaded from
    warnings: tuple[str, ...] = field(default=(), metadata=_derived())  # for the CLI to print

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret in the config, e.g. to register with the logging filter."""
        found = [self.faxde.password]
        if self.journal.password is not None:
            found.append(self.journal.password)
        if self.smtp is not None:
            if self.smtp.relay is not None and self.smtp.relay.password is not None:
                found.append(self.smtp.relay.password)
            found.extend(self.smtp.auth.users.values())
        if self.console is not None:
            found.extend(user.password_hash for user in self.console.users)
        return tuple(found)


# --------------------------------------------------------------------------------------------------
# Entry points


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the YAML file at ``path``.  Raises ConfigError, never exits."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    data = _load_yaml(text, file)
    if data is None:
        raise ConfigError("", f"{file} is empty (the faxde section is required)")
    config = parse_config(data, file.resolve().parent, environ=environ)
    return dataclasses.replace(config, source=file.resolve())


def check_config(path: str | Path) -> tuple[Config, list[str]]:
    """For ``faxbridge check-config``: the config and its warnings, or ConfigError."""
    config = load_config(path)
    return config, list(config.warnings)


def parse_config(
    data: Any, base_dir: Path, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a mapping as yaml.safe_load returns it; relative paths are taken from base_dir."""
    ctx = _Context(Path(base_dir).expanduser().resolve(), os.environ if environ is None else environ)
    top = _mapping(data, "")
    _check_keys(top, _keys(Config), "")
    if "faxde" not in top:
        raise ConfigError("faxde", "required section is missing")

    state_dir = _opt(top, "state_dir", "", Config, lambda v, p: _path(v, p, ctx.base_dir))
    numbers = _numbers(top["numbers"], "numbers", ctx) if "numbers" in top else NumbersConfig()
    policy = numbers.policy()
    faxde = _faxde(top["faxde"], "faxde", ctx)
    journal = _journal(top.get("journal"), "journal", ctx)
    documents = _documents(top.get("documents"), "documents")
    convert = _convert(top.get("convert"), "convert", ConvertSettings(work_dir=state_dir / "convert"))
    hotfolders = _hotfolders(top.get("hotfolders"), "hotfolders", ctx, policy, convert)
    status = _status(top.get("status"), "status")
    inbound, inbound_enabled = (
        _inbound(top["inbound"], "inbound", ctx, policy) if "inbound" in top else (None, False)
    )
    smtp = _smtp(top["smtp"], "smtp", ctx, state_dir) if "smtp" in top else None
    print_ = _print(top["print"], "print", ctx, state_dir) if "print" in top else None
    approval = _approval(top.get("approval"), "approval")
    alerts = _alerts(top["alerts"], "alerts") if top.get("alerts") is not None else None
    metrics = _metrics(top.get("metrics"), "metrics")
    console = _console(top["console"], "console", ctx) if "console" in top else None
    logging_ = _logging(top.get("logging"), "logging")

    _check_folders(hotfolders, inbound)
    if console is not None and journal.is_postgresql:
        # Its job search is SQLite's full-text index (journal/queries.py); not ported yet.
        raise ConfigError("console", "needs the SQLite journal for now; not available with journal: postgresql://")
    if console is not None:
        for other, address in (("metrics.listen", metrics.listen), ("smtp.listen", smtp and smtp.listen)):
            if address is not None and address == console.listen and console.listen.port != 0:
                raise ConfigError("console.listen", f"same address as {other} ({console.listen})")
    if inbound is not None and inbound_enabled and (smtp is None or smtp.relay is None):
        for i, route in enumerate(inbound.routes):
            if route.mail_to:
                raise ConfigError(
                    f"inbound.routes[{i}].mail_to", "needs smtp.relay to send mail through"
                )
    if faxde.callback_url and metrics.listen is None:
        raise ConfigError("faxde.callback_url", "needs metrics.listen: the HTTP server FAX.de calls back")
    if print_ is not None and print_.report_to and (smtp is None or smtp.relay is None):
        raise ConfigError("print.report_to", "needs smtp.relay to send the report mails through")
    no_relay = smtp is None or smtp.relay is None
    if approval.notify and no_relay:
        raise ConfigError("approval.notify", "needs smtp.relay to send the mails through")
    if alerts is not None and no_relay:
        raise ConfigError("alerts.mail_to", "needs smtp.relay to send the alerts through")
    if smtp is not None:
        if not smtp.allowed_senders and not smtp.auth.users:
            raise ConfigError(
                "smtp.allowed_senders",
                "nobody could send: list allowed senders, or set up smtp.auth users",
            )
        if smtp.auth.required and not smtp.auth.users:
            raise ConfigError("smtp.auth.required", "true, but smtp.auth has no users")
        if smtp.auth.required and not smtp.tls.enabled:
            # Checked here, not only when the listener starts: check-config must say so too.
            raise ConfigError("smtp.auth.required", "needs smtp.tls: AUTH is offered only after STARTTLS")
        if smtp.auth.users and not smtp.tls.enabled and not smtp.listen.is_loopback:
            ctx.warnings.append(
                f"smtp.auth: passwords would cross the network in clear text on {smtp.listen};"
                " configure smtp.tls"
            )
        if metrics.listen is not None and metrics.listen == smtp.listen:
            raise ConfigError("metrics.listen", f"same address as smtp.listen ({smtp.listen})")

    return Config(
        faxde=faxde,
        state_dir=state_dir,
        numbers=numbers,
        journal=journal,
        documents=documents,
        convert=convert,
        hotfolders=hotfolders,
        status=status,
        inbound=inbound if inbound_enabled else None,
        smtp=smtp,
        print=print_,
        approval=approval,
        alerts=alerts,
        metrics=metrics,
        console=console,
        logging=logging_,
        warnings=tuple(ctx.warnings),
    )


# --------------------------------------------------------------------------------------------------
# Sections


def _numbers(value: Any, path: str, ctx: _Context) -> NumbersConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(NumbersConfig), path)
    default_country = _opt(data, "default_country", path, NumbersConfig, _optional(_region))
    allowed = _opt(data, "allowed_countries", path, NumbersConfig, _allowed_countries)
    if default_country is not None and ANY_COUNTRY not in allowed and default_country not in allowed:
        ctx.warnings.append(
            f"{path}.default_country: {default_country} is not in allowed_countries, so every"
            " number written without a country code will be refused"
        )
    return NumbersConfig(default_country=default_country, allowed_countries=allowed)


def _region(value: Any, path: str) -> str:
    code = _str(value, path)
    if not re.fullmatch(r"[A-Za-z]{2}", code) or not is_known_region(code.upper()):
        raise ConfigError(path, f"expected a two-letter ISO 3166 country code like DE; got {code!r}")
    return code.upper()


def _allowed_countries(value: Any, path: str) -> frozenset[str]:
    codes = _list(value, path, lambda v, p: ANY_COUNTRY if v == ANY_COUNTRY else _region(v, p))
    if not codes:
        raise ConfigError(path, "empty: no number could be dialled (use [\"*\"] for any country)")
    if ANY_COUNTRY in codes and len(set(codes)) > 1:
        raise ConfigError(path, "'*' already allows every country; list nothing else with it")
    return frozenset(codes)


def _faxde(value: Any, path: str, ctx: _Context) -> FaxdeConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(FaxdeConfig, extra=_SECRET_KEYS), path)
    if "account" not in data:
        raise ConfigError(_join(path, "account"), "required (your FAX.de customer id)")
    retry = _retry(data.get("retry"), _join(path, "retry"))
    return FaxdeConfig(
        account=_account(data["account"], _join(path, "account")),
        password=_secret(data, path, ctx, credential=CREDENTIAL_NAME),
        wsdl=_opt(data, "wsdl", path, FaxdeConfig, lambda v, p: _wsdl(v, p, ctx.base_dir)),
        endpoint=_opt(data, "endpoint", path, FaxdeConfig, _optional(_url)),
        timeout=_opt(data, "timeout", path, FaxdeConfig, _positive_duration),
        connect_timeout=_opt(data, "connect_timeout", path, FaxdeConfig, _positive_duration),
        concurrency=_opt(data, "concurrency", path, FaxdeConfig, _int_range(1, 64)),
        retry=retry,
        reconcile_window=_opt(data, "reconcile_window", path, FaxdeConfig, _duration),
        callback_url=_opt(data, "callback_url", path, FaxdeConfig, _optional(_callback_url)),
    )


def _callback_url(value: Any, path: str) -> str:
    from faxbridge.callbacks import check_base_url

    url = _str(value, path).strip()
    problem = check_base_url(url)
    if problem:
        raise ConfigError(path, problem)
    return url.rstrip("/")


def _account(value: Any, path: str) -> str:
    # A YAML integer is accepted (account: 12345); note that YAML reads 012345 as octal.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    account = _str(value, path).strip()
    if not account or any(ch.isspace() for ch in account):
        raise ConfigError(path, f"expected your FAX.de customer id; got {value!r}")
    return account


def _wsdl(value: Any, path: str, base: Path) -> str:
    text = _str(value, path)
    if text.startswith(("http://", "https://")):
        return _url(text, path)
    file = _path(text, path, base)
    if not file.is_file():
        raise ConfigError(path, f"no such file: {file}")
    return str(file)


def _retry(value: Any, path: str) -> RetryConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(RetryConfig), path)
    retry = RetryConfig(
        max_attempts=_opt(data, "max_attempts", path, RetryConfig, _int_range(1, 1000)),
        initial_delay=_opt(data, "initial_delay", path, RetryConfig, _positive_duration),
        max_delay=_opt(data, "max_delay", path, RetryConfig, _positive_duration),
    )
    if retry.max_delay < retry.initial_delay:
        raise ConfigError(
            _join(path, "max_delay"),
            f"{_fmt_duration(retry.max_delay)} is less than initial_delay"
            f" ({_fmt_duration(retry.initial_delay)})",
        )
    return retry


_POSTGRESQL_SCHEMES: Final = ("postgresql://", "postgres://")


def _journal(value: Any, path: str, ctx: _Context) -> JournalConfig:
    # `journal: postgresql://…` (or a path) is short for `journal: {url: …}`.
    data = {"url": value} if isinstance(value, str) else dict(_mapping(value, path))
    url_path = _join(path, "url") if not isinstance(value, str) else path
    _check_keys(data, _keys(JournalConfig, _SECRET_KEYS), path)
    url = _journal_url(data.get("url"), url_path, ctx)
    password = None
    if any(data.get(key) is not None for key in _SECRET_KEYS):
        if url is None or not url.startswith(_POSTGRESQL_SCHEMES):
            raise ConfigError(path, "a password is for a postgresql:// journal only")
        password = _secret(data, path, ctx)
    journal = JournalConfig(
        duplicate_window=_opt(data, "duplicate_window", path, JournalConfig, _duration),
        retention=_opt(data, "retention", path, JournalConfig, _positive_duration),
        url=url,
        password=password,
        node=_opt(data, "node", path, JournalConfig, _optional(_node_name)),
        lease=_opt(data, "lease", path, JournalConfig, _positive_duration),
    )
    if journal.retention < journal.duplicate_window:
        raise ConfigError(
            _join(path, "retention"),
            f"{_fmt_duration(journal.retention)} is shorter than duplicate_window"
            f" ({_fmt_duration(journal.duplicate_window)}): duplicates would be forgotten early",
        )
    return journal


def _documents(value: Any, path: str) -> DocumentsConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(DocumentsConfig), path)
    return DocumentsConfig(
        max_size=_opt(data, "max_size", path, DocumentsConfig, _positive_size),
        max_pages=_opt(data, "max_pages", path, DocumentsConfig, _int_range(1, 100_000)),
    )


def _convert(value: Any, path: str, defaults: ConvertSettings) -> ConvertSettings:
    """The convert section, or a hotfolder's: keys not given keep ``defaults``."""
    data = _mapping(value, path)
    _check_keys(data, _keys(ConvertSettings), path)
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "paper": _enum(Paper, case_insensitive=True),
        "colour": _enum(ColourMode, case_insensitive=True),
        "images": _enum(ImageGrouping, case_insensitive=True),
        "office": _bool,
        "office_timeout": _positive_duration,
        "as_is": _as_is,
    }
    return dataclasses.replace(defaults, **{k: parsers[k](v, _join(path, k)) for k, v in data.items()})


def _as_is(value: Any, path: str) -> frozenset[str]:
    if not isinstance(value, list):
        _fail(path, f"a list of {', '.join(sorted(CONVERTIBLE_AS_IS))}", value)
    kinds = set()
    for i, item in enumerate(value):
        kind = item.lower().removeprefix(".") if isinstance(item, str) else item
        kind = "tiff" if kind == "tif" else kind
        if kind not in CONVERTIBLE_AS_IS:
            raise ConfigError(f"{path}[{i}]", f"expected one of {', '.join(sorted(CONVERTIBLE_AS_IS))};"
                                              f" got {_show(item)} (PDF and HTML always go as they are)")
        kinds.add(kind)
    return frozenset(kinds)


def _status(value: Any, path: str) -> StatusConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(StatusConfig), path)
    status = StatusConfig(
        interval=_opt(data, "interval", path, StatusConfig, _positive_duration),
        max_interval=_opt(data, "max_interval", path, StatusConfig, _positive_duration),
    )
    if status.max_interval < status.interval:
        raise ConfigError(
            _join(path, "max_interval"),
            f"{_fmt_duration(status.max_interval)} is less than interval"
            f" ({_fmt_duration(status.interval)})",
        )
    return status


def _hotfolders(
    value: Any, path: str, ctx: _Context, numbers: NumberPolicy, convert: ConvertSettings
) -> tuple[HotfolderConfig, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        _fail(path, "a list of hotfolders", value)
    folders = tuple(
        _hotfolder(item, f"{path}[{i}]", ctx, numbers, convert) for i, item in enumerate(value)
    )
    for i, folder in enumerate(folders):
        for j in range(i):
            if folders[j].path == folder.path:
                raise ConfigError(
                    f"{path}[{i}].path", f"same folder as {path}[{j}].path ({folder.path})"
                )
    return folders


def _hotfolder(
    value: Any, path: str, ctx: _Context, numbers: NumberPolicy, convert: ConvertSettings
) -> HotfolderConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(HotfolderConfig), path)
    if "path" not in data:
        raise ConfigError(_join(path, "path"), "required (the folder to watch)")
    folder = _path(data["path"], _join(path, "path"), ctx.base_dir)
    job_type = _opt(data, "job_type", path, HotfolderConfig, _enum(JobType))
    recipient = None
    if data.get("recipient") is not None:
        recipient = _recipient(data["recipient"], _join(path, "recipient"), job_type, numbers)
    options: tuple[tuple[str, str], ...] = ()
    if data.get("options") is not None:
        options = validate_options(data["options"], job_type, _join(path, "options"))
    hotfolder = HotfolderConfig(
        path=folder,
        job_type=job_type,
        recipient=recipient,
        options=options,
        sent_dir=_opt(data, "sent_dir", path, HotfolderConfig, lambda v, p: _path(v, p, folder)),
        failed_dir=_opt(data, "failed_dir", path, HotfolderConfig, lambda v, p: _path(v, p, folder)),
        settle_time=_opt(data, "settle_time", path, HotfolderConfig, _duration),
        watch=_watch_mode(data, path),
        polling=_opt(data, "polling", path, HotfolderConfig, _bool),
        poll_interval=_opt(data, "poll_interval", path, HotfolderConfig, _positive_duration),
        rescan_interval=_opt(data, "rescan_interval", path, HotfolderConfig, _duration),
        text=_opt(data, "text", path, HotfolderConfig, lambda v, p: _str(v, p, allow_empty=True)),
        hold=_opt(data, "hold", path, HotfolderConfig, _hold_rules),
        report_pdf=_opt(data, "report_pdf", path, HotfolderConfig, _bool),
        convert=_convert(data.get("convert"), _join(path, "convert"), convert),
    )
    # Defaults are relative names; make them absolute like given values.
    hotfolder = dataclasses.replace(
        hotfolder,
        sent_dir=_under(folder, hotfolder.sent_dir),
        failed_dir=_under(folder, hotfolder.failed_dir),
        polling=hotfolder.watch is WatchMode.POLL,
    )
    if hotfolder.sent_dir == hotfolder.failed_dir:
        raise ConfigError(_join(path, "failed_dir"), f"same folder as sent_dir ({hotfolder.sent_dir})")
    for key in ("sent_dir", "failed_dir"):
        if getattr(hotfolder, key) == folder:
            raise ConfigError(_join(path, key), "is the hotfolder itself: files would be sent again")
    return hotfolder


def _watch_mode(data: Mapping[str, Any], path: str) -> WatchMode:
    """``watch``; ``polling: true`` (the older key) means ``watch: poll`` and may not contradict it."""
    polling = _opt(data, "polling", path, HotfolderConfig, _bool)
    if "watch" not in data:
        return WatchMode.POLL if polling else WatchMode.AUTO
    mode = _enum(WatchMode)(data["watch"], _join(path, "watch"))
    if polling and mode is not WatchMode.POLL:
        raise ConfigError(_join(path, "polling"), f"true contradicts watch: {mode} (polling: true is watch: poll)")
    return mode


def _recipient(value: Any, path: str, job_type: JobType, numbers: NumberPolicy) -> str:
    if not job_type.needs_recipient:
        raise ConfigError(path, f"not used for {job_type}: the address is read from the document")
    if not isinstance(value, str):
        _fail(path, "a string (quote numbers in YAML: '+4940123456')", value)
    if job_type.dials_numbers:
        try:
            return numbers.normalize(value, purpose=job_type.value)
        except NumberError as exc:
            raise ConfigError(path, exc.reason) from None
    return _email(value, path)


def _check_folders(hotfolders: tuple[HotfolderConfig, ...], inbound: InboundConfig | None) -> None:
    """No folder faxbridge writes into may be one it sends from: that would loop."""
    for i, folder in enumerate(hotfolders):
        for j, other in enumerate(hotfolders):
            for key in ("sent_dir", "failed_dir"):
                if i != j and getattr(folder, key) == other.path:
                    raise ConfigError(
                        f"hotfolders[{i}].{key}",
                        f"is hotfolders[{j}].path ({other.path}): files would be sent again",
                    )
    if inbound is None:
        return
    outputs = [("inbound.output", inbound.output)]
    outputs += [(f"inbound.routes[{k}].output", r.output) for k, r in enumerate(inbound.routes)]
    for key, output in outputs:
        for i, folder in enumerate(hotfolders):
            if _overlaps(output, folder.path):
                raise ConfigError(
                    key,
                    f"overlaps hotfolders[{i}].path ({folder.path}): received faxes would be"
                    " sent out again",
                )


def _inbound(
    value: Any, path: str, ctx: _Context, numbers: NumberPolicy
) -> tuple[InboundConfig, bool]:
    data = _mapping(value, path)
    _check_keys(data, _keys(InboundConfig, extra=("enabled",)), path)
    # The section's presence turns inbound on; enabled: false keeps it (validated) but off.
    enabled = _bool(data["enabled"], _join(path, "enabled")) if "enabled" in data else True
    if "output" not in data:
        raise ConfigError(_join(path, "output"), "required (the folder received faxes go to)")
    output = _path(data["output"], _join(path, "output"), ctx.base_dir)
    pdf = _opt(data, "pdf", path, InboundConfig, _bool)
    filename = _opt(data, "filename", path, InboundConfig, lambda v, p: _filename(v, p, ctx))
    routes = ()
    if data.get("routes") is not None:
        routes = _routes(data["routes"], _join(path, "routes"), ctx, numbers, output, pdf)
    inbound = InboundConfig(
        output=output,
        interval=_opt(data, "interval", path, InboundConfig, _positive_duration),
        max_per_run=_opt(data, "max_per_run", path, InboundConfig, _int_range(1, 10_000)),
        filename=filename,
        pdf=pdf,
        max_size=_opt(data, "max_size", path, InboundConfig, _positive_size),
        routes=routes,
    )
    return inbound, enabled


def _filename(value: Any, path: str, ctx: _Context) -> str:
    template = _str(value, path)
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(path, f"not a valid template: {exc}") from None
    known = ", ".join(INBOUND_FILENAME_FIELDS)
    for name in fields:
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if base not in INBOUND_FILENAME_FIELDS:
            raise ConfigError(path, f"unknown field {{{name}}} (known: {known})")
    try:
        sample = template.format(**INBOUND_FILENAME_FIELDS)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ConfigError(path, f"cannot be filled in: {exc}") from None
    if "/" in sample or "\\" in sample or sample.startswith(".") or "\0" in sample:
        raise ConfigError(path, f"must make a plain file name, not {sample!r}")
    if "fax_id" not in {re.split(r"[.\[:!]", name, maxsplit=1)[0] for name in fields}:
        ctx.warnings.append(
            f"{path}: without {{fax_id}} two faxes may get the same name (e.g. {sample!r})"
        )
    return template


def _routes(
    value: Any,
    path: str,
    ctx: _Context,
    numbers: NumberPolicy,
    output: Path,
    pdf: bool,
) -> tuple[InboundRoute, ...]:
    if not isinstance(value, list):
        _fail(path, "a list of routes", value)
    routes: list[InboundRoute] = []
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        data = _mapping(item, item_path)
        _check_keys(data, _keys(InboundRoute), item_path)
        if "called_number" not in data:
            raise ConfigError(_join(item_path, "called_number"), "required (your fax number)")
        number = _own_number(data["called_number"], _join(item_path, "called_number"), numbers)
        for j, earlier in enumerate(routes):
            if earlier.called_number == number:
                raise ConfigError(
                    _join(item_path, "called_number"), f"{number} already has a route ({path}[{j}])"
                )
        routes.append(
            InboundRoute(
                called_number=number,
                output=_path(data["output"], _join(item_path, "output"), ctx.base_dir)
                if data.get("output") is not None
                else output,
                pdf=_bool(data["pdf"], _join(item_path, "pdf"))
                if data.get("pdf") is not None
                else pdf,
                mail_to=_opt(data, "mail_to", item_path, InboundRoute, _list_of(_email)),
            )
        )
    return tuple(routes)


def _own_number(value: Any, path: str, numbers: NumberPolicy) -> str:
    """One of the account's own numbers: only read, never dialled, so no refusal rules apply."""
    if not isinstance(value, str):
        _fail(path, "a string (quote numbers in YAML: '+494012345')", value)
    try:
        parsed = phonenumbers.parse(value, numbers.default_country)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise ConfigError(path, f"not a valid phone number: {value!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _smtp(value: Any, path: str, ctx: _Context, state_dir: Path) -> SmtpConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(SmtpConfig), path)

    def in_state_dir(value: Any, path: str) -> Path:
        return _path(value, path, state_dir)
    if not data.get("domains"):
        raise ConfigError(
            _join(path, "domains"), "required: at least one mail domain and its job type"
        )
    smtp = SmtpConfig(
        domains=_domains(data["domains"], _join(path, "domains")),
        listen=_opt(data, "listen", path, SmtpConfig, _listen),
        allowed_senders=_opt(data, "allowed_senders", path, SmtpConfig, _list_of(_sender_pattern)),
        relay=_opt(data, "relay", path, SmtpConfig, lambda v, p: _relay(v, p, ctx)),
        report_from=_opt(data, "report_from", path, SmtpConfig, _email),
        max_message_size=_opt(data, "max_message_size", path, SmtpConfig, _positive_size),
        max_recipients=_opt(data, "max_recipients", path, SmtpConfig, _int_range(1, 1000)),
        rate_limit=_opt(data, "rate_limit", path, SmtpConfig, _optional(_rate_limit)),
        max_connections=_opt(data, "max_connections", path, SmtpConfig, _int_range(1, 10_000)),
        idle_timeout=_opt(data, "idle_timeout", path, SmtpConfig, _positive_duration),
        data_timeout=_opt(data, "data_timeout", path, SmtpConfig, _positive_duration),
        body=_opt(data, "body", path, SmtpConfig, _enum(BodyMode)),
        trim_body=_opt(data, "trim_body", path, SmtpConfig, _bool),
        multi_recipient=_opt(data, "multi_recipient", path, SmtpConfig, _enum(MultiRecipient)),
        tls=_opt(data, "tls", path, SmtpConfig, lambda v, p: _tls(v, p, ctx)),
        auth=_opt(data, "auth", path, SmtpConfig, lambda v, p: _auth(v, p, ctx)),
        archive_dir=_opt(data, "archive_dir", path, SmtpConfig, _optional(in_state_dir)),
        spool_dir=_opt(data, "spool_dir", path, SmtpConfig, _optional(in_state_dir)),
        hold=_opt(data, "hold", path, SmtpConfig, _sender_hold_rules),
        report_pdf=_opt(data, "report_pdf", path, SmtpConfig, _bool),
    )
    # null or absent: the default name inside state_dir.
    return dataclasses.replace(
        smtp,
        archive_dir=_under(state_dir, smtp.archive_dir or _default(SmtpConfig, "archive_dir")),
        spool_dir=_under(state_dir, smtp.spool_dir or _default(SmtpConfig, "spool_dir")),
    )


def _print(value: Any, path: str, ctx: _Context, state_dir: Path) -> PrintConfig:
    data = _mapping(value if value is not None else {}, path)
    _check_keys(data, _keys(PrintConfig), path)

    def in_state_dir(value: Any, path: str) -> Path:
        return _path(value, path, state_dir)

    config = PrintConfig(
        socket=_opt(data, "socket", path, PrintConfig, lambda v, p: _path(v, p, ctx.base_dir)),
        spool_dir=_opt(data, "spool_dir", path, PrintConfig, in_state_dir),
        failed_dir=_opt(data, "failed_dir", path, PrintConfig, in_state_dir),
        control_codes=_opt(data, "control_codes", path, PrintConfig, _bool),
        allowed_users=_opt(data, "allowed_users", path, PrintConfig, _list_of(_print_user)),
        report_to=_opt(data, "report_to", path, PrintConfig, _report_to),
        max_size=_opt(data, "max_size", path, PrintConfig, _positive_size),
    )
    if len(os.fsencode(config.socket)) > 107:  # sun_path holds 108 bytes with its NUL (unix(7))
        raise ConfigError(_join(path, "socket"), f"{config.socket} is too long for a Unix socket (at most 107 bytes)")
    # Defaults are relative to state_dir too (the dataclass holds them as relative names).
    return dataclasses.replace(
        config, spool_dir=_under(state_dir, config.spool_dir), failed_dir=_under(state_dir, config.failed_dir))


def _print_user(value: Any, path: str) -> str:
    name = _str(value, path).strip()
    if any(ch.isspace() for ch in name):
        raise ConfigError(path, f"expected a user name (or *); got {value!r}")
    return name


def _report_to(value: Any, path: str) -> Mapping[str, str]:
    data = _mapping(value, path)
    mapping: dict[str, str] = {}
    for user, address in data.items():
        where = _join(path, str(user))
        _print_user(user, where)
        text = _str(address, where)
        # "{user}@example.com" under "*": the address made from the print user's name.
        _email(text.replace("{user}", "user"), where)
        if "{user}" in text and user != "*":
            raise ConfigError(where, "{user} is only for the '*' entry")
        mapping[str(user)] = text
    return FrozenDict(mapping)


def _domains(value: Any, path: str) -> Mapping[str, JobType]:
    data = _mapping(value, path)
    domains: dict[str, JobType] = {}
    for key, job_type in data.items():
        domain = _domain(key, _join(path, key))
        if domain in domains:
            raise ConfigError(_join(path, key), f"{domain} is listed twice")
        domains[domain] = _enum(JobType)(job_type, _join(path, key))
    return FrozenDict(domains)


def _relay(value: Any, path: str, ctx: _Context) -> RelayConfig | None:
    if value is None:
        return None
    if isinstance(value, str):
        address = _host_port(value, path, default_port=_default(RelayConfig, "port"))
        return RelayConfig(host=address.host, port=address.port)
    data = _mapping(value, path)
    _check_keys(data, _keys(RelayConfig, extra=_SECRET_KEYS), path)
    if "host" not in data:
        raise ConfigError(_join(path, "host"), "required (the mail server to send through)")
    host = _host(_str(data["host"], _join(path, "host")), _join(path, "host"))
    username = _opt(data, "username", path, RelayConfig, _optional(_str))
    password = None
    if any(data.get(key) is not None for key in _SECRET_KEYS):
        password = _secret(data, path, ctx)
    if username is not None and password is None:
        raise ConfigError(_join(path, "password_file"), "username is set: give the password too")
    if password is not None and username is None:
        raise ConfigError(_join(path, "username"), "a password is given: give the user name too")
    return RelayConfig(
        host=host,
        port=_opt(data, "port", path, RelayConfig, _int_range(1, 65535)),
        starttls=_opt(data, "starttls", path, RelayConfig, _bool),
        username=username,
        password=password,
    )


def _rate_limit(value: Any, path: str) -> RateLimit:
    data = _mapping(value, path)
    _check_keys(data, _keys(RateLimit), path)
    return RateLimit(
        messages=_opt(data, "messages", path, RateLimit, _int_range(1, 1_000_000)),
        per=_opt(data, "per", path, RateLimit, _positive_duration),
    )


def _tls(value: Any, path: str, ctx: _Context) -> TlsConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(TlsConfig), path)
    cert = _opt(data, "cert", path, TlsConfig, _optional(lambda v, p: _path(v, p, ctx.base_dir)))
    key = _opt(data, "key", path, TlsConfig, _optional(lambda v, p: _path(v, p, ctx.base_dir)))
    if (cert is None) != (key is None):
        missing = "key" if key is None else "cert"
        raise ConfigError(_join(path, missing), "required when the other of cert/key is given")
    for name, file in (("cert", cert), ("key", key)):
        if file is not None and not file.is_file():
            raise ConfigError(_join(path, name), f"no such file: {file}")
    return TlsConfig(cert=cert, key=key)


# passlib's pbkdf2 format: $pbkdf2-sha256$ROUNDS$SALT$CHECKSUM (adapted base64).
_HASH_RE: Final = re.compile(r"\$pbkdf2-sha(?:256|512)\$\d+\$[A-Za-z0-9./+=]+\$[A-Za-z0-9./+=]+")
_HASH_PROBLEM: Final = "expected a password hash like $pbkdf2-sha256$29000$SALT$HASH, not a password"


def _auth(value: Any, path: str, ctx: _Context) -> AuthConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(AuthConfig), path)
    users: dict[str, Secret] = {}
    users_path = _join(path, "users")
    for name, hashed in _mapping(data.get("users"), users_path).items():
        _user_name(name, _join(users_path, name))
        if not isinstance(hashed, str) or not _HASH_RE.fullmatch(hashed):
            raise ConfigError(_join(users_path, name), _HASH_PROBLEM)  # never echo: it may be one
        users[name] = Secret(hashed, f"{users_path}.{name}")
    password_file = _opt(
        data, "password_file", path, AuthConfig, _optional(lambda v, p: _path(v, p, ctx.base_dir))
    )
    if password_file is not None:
        file_path = _join(path, "password_file")
        for number, line in enumerate(_read_text(password_file, file_path).splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            where = f"{password_file} line {number}"
            if not sep or not _HASH_RE.fullmatch(hashed):
                raise ConfigError(file_path, f"{where}: expected 'user:$pbkdf2-sha256$…'")
            _user_name(name, f"{file_path} ({where})")
            if name in users:
                raise ConfigError(file_path, f"{where}: user {name!r} is defined twice")
            users[name] = Secret(hashed, where)
    return AuthConfig(
        users=FrozenDict(users),
        password_file=password_file,
        required=_opt(data, "required", path, AuthConfig, _bool),
    )


def _user_name(name: str, path: str) -> None:
    if not re.fullmatch(r"[^\s:]{1,64}", name):
        raise ConfigError(path, "a user name must be 1–64 characters without spaces or ':'")


def _hold_rules(value: Any, path: str) -> tuple[HoldRule, ...]:
    try:
        return parse_rules(value)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _sender_hold_rules(value: Any, path: str) -> Mapping[str, tuple[HoldRule, ...]]:
    data = _mapping(value if value is not None else {}, path)
    rules: dict[str, tuple[HoldRule, ...]] = {}
    for key, item in data.items():
        text = _str(key, path)
        # A bare domain means everyone there.
        pattern = _sender_pattern(text if "@" in text else f"*@{text}", _join(path, text))
        rules[pattern] = _hold_rules(item, _join(path, text))
    return FrozenDict(rules)


def _approval(value: Any, path: str) -> ApprovalConfig:
    data = _mapping(value if value is not None else {}, path)
    _check_keys(data, _keys(ApprovalConfig), path)
    link = _opt(data, "link", path, ApprovalConfig, _optional(_url))
    return ApprovalConfig(
        hold=_opt(data, "hold", path, ApprovalConfig, _hold_rules),
        expiry=_opt(data, "expiry", path, ApprovalConfig, _duration),
        notify=_opt(data, "notify", path, ApprovalConfig, _list_of(_email)),
        link=link,
    )


def _alerts(value: Any, path: str) -> AlertsConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(AlertsConfig), path)
    if not data.get("mail_to"):
        raise ConfigError(_join(path, "mail_to"), "required: the admins' addresses")
    return AlertsConfig(
        mail_to=_list_of(_email)(data["mail_to"], _join(path, "mail_to")),
        queued_after=_opt(data, "queued_after", path, AlertsConfig, _duration),
        held_after=_opt(data, "held_after", path, AlertsConfig, _duration),
        unknown_after=_opt(data, "unknown_after", path, AlertsConfig, _duration),
        provider_failing_after=_opt(data, "provider_failing_after", path, AlertsConfig, _duration),
        interval=_opt(data, "interval", path, AlertsConfig, _positive_duration),
    )


def _metrics(value: Any, path: str) -> MetricsConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(MetricsConfig), path)
    return MetricsConfig(listen=_opt(data, "listen", path, MetricsConfig, _optional(_listen)))


# faxbridge.edges.http.console.auth.hash_password's format: $scrypt$n=N,r=R,p=P$SALT$HASH (base64).
_CONSOLE_HASH_RE: Final = re.compile(r"\$scrypt\$n=\d+,r=\d+,p=\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+")


def _console(value: Any, path: str, ctx: _Context) -> ConsoleConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(ConsoleConfig), path)
    listen = _opt(data, "listen", path, ConsoleConfig, _listen)
    tls = _tls(data["tls"], _join(path, "tls"), ctx) if data.get("tls") is not None else TlsConfig()
    users = _opt(data, "users", path, ConsoleConfig, _list_of(_console_user))
    seen: set[str] = set()
    for i, user in enumerate(users):
        if user.name in seen:
            raise ConfigError(f"{path}.users[{i}].name", f"user {user.name!r} is defined twice")
        seen.add(user.name)
    if not users:
        ctx.warnings.append(f"{path}.users: no users, so nobody can log in to the console")
    if not tls.enabled and not listen.is_loopback:
        ctx.warnings.append(
            f"{path}: passwords would cross the network in clear text on {listen}; configure"
            f" {path}.tls or serve it behind a TLS reverse proxy on the same host"
        )
    return ConsoleConfig(
        listen=listen,
        tls=tls,
        users=users,
        session_lifetime=_opt(data, "session_lifetime", path, ConsoleConfig, _positive_duration),
    )


def _console_user(value: Any, path: str) -> ConsoleUser:
    data = _mapping(value, path)
    _check_keys(data, _keys(ConsoleUser), path)
    for key in ("name", "password_hash"):
        if key not in data:
            raise ConfigError(_join(path, key), "required")
    name = _str(data["name"], _join(path, "name"))
    _user_name(name, _join(path, "name"))
    hashed = data["password_hash"]
    if not isinstance(hashed, str) or not _CONSOLE_HASH_RE.fullmatch(hashed):
        # Never echo the value: it may be the password itself.
        raise ConfigError(_join(path, "password_hash"),
                          "expected a hash from `faxbridge hash-password` ($scrypt$…), not a password")
    return ConsoleUser(
        name=name,
        password_hash=Secret(hashed, _join(path, "password_hash")),
        role=_opt(data, "role", path, ConsoleUser, _enum(ConsoleRole, case_insensitive=True)),
    )


def _logging(value: Any, path: str) -> LoggingConfig:
    data = _mapping(value, path)
    _check_keys(data, _keys(LoggingConfig), path)
    return LoggingConfig(
        level=_opt(data, "level", path, LoggingConfig, _enum(LogLevel, case_insensitive=True))
    )


# --------------------------------------------------------------------------------------------------
# SendJob Options (FAXDE-API.md, "Parameter Options")


@dataclass(frozen=True)
class _OptionRule:
    job_types: frozenset[JobType]
    check: Callable[[str], str | None]  # the problem with a value, or None
    flag: bool = False  # FLASHSMS: no value


_FAX_SMS = frozenset({JobType.FAX, JobType.SMS})


def _max_len(limit: int, what: str = "characters") -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if not value:
            return "must not be empty"
        if len(value) > limit:
            return f"at most {limit} {what}; got {len(value)}"
        return None

    return check


def _check_caller_id(value: str) -> str | None:
    return None if re.fullmatch(r"\+?\d{3,20}", value) else "expected a phone number (digits)"


def _check_station_id(value: str) -> str | None:
    if not value.isascii():
        return "ASCII characters only (fax machines print nothing else)"
    return _max_len(20)(value)


def _check_fax_retry(value: str) -> str | None:
    return None if re.fullmatch(r"\d{1,2}", value) else "expected a number of retries (0–99)"


def _check_mail_from(value: str) -> str | None:
    return None if _EMAIL_RE.fullmatch(value) else "expected a mail address"


def _check_sms_from(value: str) -> str | None:
    # "max. 16 chars numeric or 11 chars alphanumeric"
    if re.fullmatch(r"\+?\d{1,16}", value) or re.fullmatch(r"[A-Za-z0-9]{1,11}", value):
        return None
    return "expected up to 16 digits, or up to 11 letters and digits"


def _check_stat_url(value: str) -> str | None:
    if any(ch.isspace() for ch in value):
        return "must not contain spaces"
    return _max_len(128)(value)


OPTION_RULES: Final[Mapping[str, _OptionRule]] = MappingProxyType(
    {
        "ISDNABS": _OptionRule(_FAX_SMS, _check_caller_id),
        "CALLERID": _OptionRule(_FAX_SMS, _check_caller_id),
        "STATIONID": _OptionRule(frozenset({JobType.FAX}), _check_station_id),
        "FAXHEADER": _OptionRule(frozenset({JobType.FAX}), _max_len(30)),
        "FAXRETRY": _OptionRule(frozenset({JobType.FAX}), _check_fax_retry),
        "MAILFROM": _OptionRule(frozenset({JobType.EMAIL, JobType.QSIGN}), _check_mail_from),
        "FLASHSMS": _OptionRule(frozenset({JobType.SMS}), lambda v: None, flag=True),
        "SMSFROM": _OptionRule(frozenset({JobType.SMS}), _check_sms_from),
        "STATURL": _OptionRule(frozenset(JobType), _check_stat_url),
    }
)


def validate_options(
    value: Any, job_type: JobType, path: str = "options"
) -> tuple[tuple[str, str], ...]:
    """SendJob Options from a mapping ({STATIONID: ACME, FLASHSMS: true}) as SendRequest.options."""
    data = _mapping(value, path)
    _check_keys(data, OPTION_RULES, path)
    options: list[tuple[str, str]] = []
    for name, raw in data.items():
        rule = OPTION_RULES[name]
        key = _join(path, name)
        if job_type not in rule.job_types:
            kinds = ", ".join(sorted(rule.job_types))
            raise ConfigError(key, f"applies to job type {kinds} only, not {job_type}")
        if rule.flag:
            if raw is True or raw is None or raw == "":
                options.append((name, ""))
            elif raw is not False:
                _fail(key, "true or false", raw)
            continue
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str):
            _fail(key, "a string", raw)
        if ";" in raw:
            raise ConfigError(key, "must not contain ';' (FAX.de separates options with it)")
        if not raw.isprintable():
            raise ConfigError(key, "must not contain line breaks or control characters")
        problem = rule.check(raw)
        if problem is not None:
            raise ConfigError(key, f"{problem}; got {raw!r}")
        options.append((name, raw))
    return tuple(options)


def _node_name(value: Any, path: str) -> str:
    text = _str(value, path)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", text):
        raise ConfigError(path, f"expected a name of letters, digits, '.', '_', '-'; got {text!r}")
    return text


def _journal_url(value: Any, path: str, ctx: _Context) -> str | None:
    if value is None:
        return None
    text = _str(value, path)
    if not text.startswith(_POSTGRESQL_SCHEMES):
        if "://" in text:
            raise ConfigError(path, "expected postgresql://USER@HOST:PORT/DB or a file path")
        return str(_path(text, path, ctx.base_dir))
    from psycopg import conninfo

    try:
        params = conninfo.conninfo_to_dict(text)
    except Exception:
        # Not the text itself: it may hold a password.
        raise ConfigError(path, "not a valid postgresql:// URL") from None
    if params.get("password"):
        raise ConfigError(
            path, "holds a password: put it in journal.password_file (or PGPASSFILE) instead"
        )
    if not params.get("dbname"):
        raise ConfigError(path, "names no database: postgresql://USER@HOST:PORT/DB")
    return text


# --------------------------------------------------------------------------------------------------
# Secrets

_SECRET_KEYS: Final = ("password_file", "password_env", "password")


def _secret(
    data: Mapping[str, Any], path: str, ctx: _Context, *, credential: str | None = None
) -> Secret:
    """Exactly one of password_file, password_env, password; or a systemd credential."""
    given = [key for key in _SECRET_KEYS if data.get(key) is not None]
    if len(given) > 1:
        raise ConfigError(path, f"give only one of {', '.join(_SECRET_KEYS)}; got {', '.join(given)}")
    if not given:
        directory = ctx.environ.get("CREDENTIALS_DIRECTORY")
        if credential and directory and (Path(directory) / credential).is_file():
            file = Path(directory) / credential
            return Secret(_read_secret_file(file, path, ctx), f"systemd credential {credential}")
        hint = f" (or a systemd credential named {credential})" if credential else ""
        raise ConfigError(
            path, f"no password: set password_file, password_env or password{hint}"
        )
    key = given[0]
    key_path = _join(path, key)
    raw = data[key]
    if not isinstance(raw, str):
        # Never show the value: it may be the password itself.
        raise ConfigError(key_path, "expected a string (quote it in YAML)")
    if key == "password_file":
        file = _path(raw, key_path, ctx.base_dir)
        return Secret(_read_secret_file(file, key_path, ctx), f"file {file}")
    if key == "password_env":
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw):
            raise ConfigError(key_path, f"expected an environment variable name; got {raw!r}")
        if raw not in ctx.environ:
            raise ConfigError(key_path, f"environment variable {raw} is not set")
        if not ctx.environ[raw]:
            raise ConfigError(key_path, f"environment variable {raw} is empty")
        return Secret(ctx.environ[raw], f"environment variable {raw}")
    if not raw:
        raise ConfigError(key_path, "is empty")
    ctx.warnings.append(
        f"{key_path}: the password is written in the config file; prefer password_file"
        " (works with systemd LoadCredential=) or password_env"
    )
    return Secret(raw, "the config file")


def _read_secret_file(file: Path, path: str, ctx: _Context) -> str:
    text = _read_text(file, path)
    # Editors and `echo` add one trailing newline; it is not part of the password.
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ConfigError(path, f"{file} is empty")
    if "\n" in text or "\r" in text:
        raise ConfigError(path, f"{file} has more than one line")
    try:
        if file.stat().st_mode & 0o004:
            ctx.warnings.append(f"{path}: {file} is readable by every user; chmod o-r it")
    except OSError:
        pass
    return text


def _read_text(file: Path, path: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, f"{file} is not UTF-8 text") from None


# --------------------------------------------------------------------------------------------------
# Scalars

_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_SIZE_UNITS: Final = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE_RE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Seconds from a number or "90s", "5m", "2h", "1d", "500ms", "1h30m"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration; got a boolean")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and re.fullmatch(f"(?:{_DURATION_PART.pattern})+", text):
            seconds = sum(
                float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"expected a duration like 90s, 5m, 2h, 1d or 500ms; got {value!r}")
    else:
        raise ValueError(f"expected a duration like 90s, 5m, 2h, 1d or 500ms; got {_show(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a duration of zero or more; got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or "10MB" (10**6), "512KiB" (2**10), "1.5GB"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a size; got a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(
                f"expected a size like 20MB, 512KiB or a number of bytes; got {value!r}"
            )
        size = round(float(match.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size like 20MB, 512KiB or a number of bytes; got {_show(value)}")
    if size < 0:
        raise ValueError(f"expected a size of zero or more; got {value!r}")
    return size


def _fmt_duration(seconds: float) -> str:
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{seconds / factor:g}{unit}"
    return f"{seconds:g}s"


def _duration(value: Any, path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _positive_duration(value: Any, path: str) -> float:
    seconds = _duration(value, path)
    if seconds <= 0:
        raise ConfigError(path, f"must be more than zero; got {_show(value)}")
    return seconds


def _positive_size(value: Any, path: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None
    if size <= 0:
        raise ConfigError(path, f"must be more than zero; got {_show(value)}")
    return size


def _str(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        _fail(path, "a string", value)
    if not allow_empty and not value.strip():
        raise ConfigError(path, "must not be empty")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, "true or false", value)
    return value


def _int_range(minimum: int, maximum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(path, "an integer", value)
        if not minimum <= value <= maximum:
            raise ConfigError(path, f"expected {minimum} to {maximum}; got {value}")
        return value

    return parse


_E = TypeVar("_E", bound=enum.StrEnum)


def _enum(cls: type[_E], *, case_insensitive: bool = False) -> Callable[[Any, str], _E]:
    def parse(value: Any, path: str) -> _E:
        text = value.lower() if case_insensitive and isinstance(value, str) else value
        for member in cls:
            if isinstance(text, str) and text == member.value:
                return member
        choices = ", ".join(member.value for member in cls)
        raise ConfigError(path, f"expected one of {choices}; got {_show(value)}")

    return parse


def _path(value: Any, path: str, base: Path) -> Path:
    text = _str(value, path)
    if "\0" in text:
        raise ConfigError(path, "must not contain NUL")
    return _under(base, Path(text).expanduser())


def _under(base: Path, path: Path) -> Path:
    """``path`` made absolute against ``base``, with . and .. folded (symlinks left alone)."""
    return Path(os.path.normpath(base / path))


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _url(value: Any, path: str) -> str:
    text = _str(value, path).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(path, f"expected an http:// or https:// URL; got {text!r}")
    return text


# RFC 1035 host names (labels of letters, digits and inner hyphens) and RFC 5322 dot-atom local parts.
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_RE: Final = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")
_LOCAL_RE: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_EMAIL_RE: Final = re.compile(rf"{_LOCAL_RE}@(?:{_LABEL}\.)*{_LABEL}", re.IGNORECASE)


def _domain(value: Any, path: str) -> str:
    domain = _str(value, path).strip().lower().rstrip(".")
    if not _DOMAIN_RE.fullmatch(domain):
        raise ConfigError(path, f"expected a domain name like fax.example.com; got {value!r}")
    return domain


def _email(value: Any, path: str) -> str:
    address = _str(value, path).strip()
    if not _EMAIL_RE.fullmatch(address):
        raise ConfigError(path, f"expected a mail address like alice@example.com; got {value!r}")
    return address


def _sender_pattern(value: Any, path: str) -> str:
    """``alice@example.com``, ``*@example.com`` (anyone there), ``*@*.example.com`` (subdomains)."""
    pattern = _str(value, path).strip().lower()
    local, sep, domain = pattern.rpartition("@")
    ok = bool(sep) and (local == "*" or re.fullmatch(_LOCAL_RE, local) is not None)
    bare = domain[2:] if domain.startswith("*.") else domain
    if not ok or not _DOMAIN_RE.fullmatch(bare):
        raise ConfigError(
            path,
            "expected a sender like alice@example.com, *@example.com or *@*.example.com;"
            f" got {value!r}",
        )
    return pattern


def _sender_matches(pattern: str, address: str) -> bool:
    local, _, domain = address.strip().lower().rpartition("@")
    want_local, _, want_domain = pattern.rpartition("@")
    if want_local != "*" and want_local != local:
        return False
    if want_domain.startswith("*."):
        return domain.endswith(want_domain[1:])
    return domain == want_domain


def _host(text: str, path: str) -> str:
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _DOMAIN_RE.fullmatch(host.lower()):
        raise ConfigError(path, f"expected a host name or IP address; got {text!r}")
    return host.lower()


def _host_port(
    value: Any, path: str, *, default_port: int | None = None, allow_zero: bool = False
) -> HostPort:
    text = _str(value, path).strip()
    problem = f"expected host:port like 127.0.0.1:2525 or [::1]:2525; got {text!r}"
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text)
    if match is None:
        if text.count(":") > 1:
            problem += " (put IPv6 addresses in brackets)"
        raise ConfigError(path, problem)
    host_text = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(host_text)
        except ValueError:
            raise ConfigError(path, problem) from None
    if port_text is None:
        if default_port is None:
            raise ConfigError(path, problem + " (the port is missing)")
        port = default_port
    else:
        port = int(port_text)
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ConfigError(path, f"port {port} is out of range")
    return HostPort(_host(host_text, path), port)


def _listen(value: Any, path: str) -> HostPort:
    # Port 0 lets the OS pick a free port (tests).
    return _host_port(value, path, allow_zero=True)


# --------------------------------------------------------------------------------------------------
# Mappings, lists and keys

_T = TypeVar("_T")


class _Context:
    """What every section parser may need: where relative paths start, the environment, warnings."""

    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.environ = environ
        self.warnings: list[str] = []


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    """A value as YAML users would write it, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _fail(path: str, expected: str, value: Any) -> Any:
    raise ConfigError(path, f"expected {expected}; got {_show(value)}")


def _mapping(value: Any, path: str) -> dict[str, Any]:
    """A YAML mapping; a section left empty (``smtp:``) counts as an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _fail(path, "a mapping" if path else "a mapping of sections (faxde:, smtp: …)", value)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(_join(path, str(key)), "keys must be strings")
    return value


def _list(value: Any, path: str, item: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    if not isinstance(value, list):
        _fail(path, "a list", value)
    return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))


def _list_of(item: Callable[[Any, str], _T]) -> Callable[[Any, str], tuple[_T, ...]]:
    return lambda value, path: _list(value, path, item)


def _optional(parse: Callable[[Any, str], _T]) -> Callable[[Any, str], _T | None]:
    return lambda value, path: None if value is None else parse(value, path)


def _keys(cls: type, extra: Iterable[str] = ()) -> frozenset[str]:
    """The YAML keys of a section: its dataclass fields (less derived ones) and ``extra``."""
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("derived")}
    return frozenset(names | set(extra))


def _check_keys(data: Mapping[str, Any], known: Iterable[str], path: str) -> None:
    known = sorted(known)
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        if not close:
            lowered = {k.lower(): k for k in known}
            close = [lowered[key.lower()]] if key.lower() in lowered else []
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        raise ConfigError(_join(path, key), f"unknown key ({hint})")


def _opt(
    data: Mapping[str, Any], key: str, path: str, cls: type, parse: Callable[[Any, str], _T]
) -> _T:
    """``data[key]`` parsed, or the default of ``cls``'s field of that name when absent."""
    if key in data:
        return parse(data[key], _join(path, key))
    try:
        return _default(cls, key)  # type: ignore[no-any-return]
    except LookupError:
        raise ConfigError(_join(path, key), "required") from None


def _default(cls: type, name: str) -> Any:
    """The default of a dataclass field: the one place defaults live."""
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    raise LookupError(name)


# --------------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also refuses duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    # Only the mapping's own keys count: overriding a key merged in with "<<: *anchor" is fine.
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if duplicate:
            raise ConfigError(
                "",
                f"line {key_node.start_mark.line + 1}: key {key!r} appears twice (first on line"
                f" {seen[key].line + 1})",
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, file: Path) -> Any:
    """Plain YAML only: SafeLoader refuses !!python/object and every other constructor tag."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}: " if mark is not None else f"{file}: "
        tag = re.search(r"tag '([^']+)'", str(exc.problem))
        if tag:
            name = tag.group(1).replace("tag:yaml.org,2002:", "!!")
            raise ConfigError(
                "",
                f"{where}YAML tag {name!r} is not allowed (only plain YAML: mappings, lists,"
                " strings, numbers, booleans)",
            ) from None
        raise ConfigError("", f"{where}{exc.problem}") from None
    except ConfigError as exc:
        raise ConfigError("", f"{file}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}: " if mark is not None else f"{file}: "
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"{where}not valid YAML: {problem}") from None
