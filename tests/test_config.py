"""Config loading: defaults, key-path errors, durations and sizes, secrets, and the example file."""

from __future__ import annotations

import dataclasses
import pickle
import re
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from faxbridge.config import (
    DEFAULT_WSDL,
    BodyMode,
    Config,
    FrozenDict,
    HostPort,
    HotfolderConfig,
    InboundConfig,
    LogLevel,
    MultiRecipient,
    Secret,
    SmtpConfig,
    WatchMode,
    check_config,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    validate_options,
)
from faxbridge.documents import DocumentLimits
from faxbridge.errors import ConfigError
from faxbridge.model import JobType
from faxbridge.numbers import NumberPolicy

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-Pa55"
ENV = {"FAXDE_PASSWORD": PASSWORD}
FAXDE = 'faxde: {account: "12345", password_env: FAXDE_PASSWORD}\n'
# A valid-looking passlib pbkdf2-sha256 hash (the config only checks its form).
HASH = "$pbkdf2-sha256$29000$N2bsnTNGaO0dA4Dw3lvr3Q$lk8Kx8V7pU4nAsVGqu3LH5TFVb0TfwY3RZNkGzVdcWg"


def parse(text: str, base_dir: Path = Path("/etc/faxbridge"), environ: dict[str, str] | None = None) -> Config:
    """Parse YAML text; a faxde section is added unless the text has its own."""
    text = textwrap.dedent(text)
    if not re.search(r"^faxde:", text, re.MULTILINE):
        text = FAXDE + text
    return parse_config(yaml.safe_load(text), base_dir, environ=ENV if environ is None else environ)


def smtp(extra: str = "") -> str:
    return "smtp:\n  domains: {fax.example.com: fax}\n  allowed_senders: ['*@example.com']\n" + extra


# --------------------------------------------------------------------------------------------------
# Defaults


def test_minimal_config_has_the_documented_defaults() -> None:
    config = parse("")
    assert config.faxde.account == "12345"
    assert config.faxde.password.reveal() == PASSWORD
    assert config.faxde.wsdl == DEFAULT_WSDL
    assert config.faxde.endpoint is None
    assert (config.faxde.timeout, config.faxde.connect_timeout, config.faxde.concurrency) == (60, 10, 4)
    assert (config.faxde.retry.max_attempts, config.faxde.retry.initial_delay) == (8, 30)
    assert config.faxde.retry.max_delay == 3600
    assert config.state_dir == Path("/var/lib/faxbridge")
    assert config.numbers.policy() == NumberPolicy()
    assert config.journal.duplicate_window == 86400 and config.journal.retention == 90 * 86400
    assert config.documents.limits() == DocumentLimits(max_size=20_000_000, max_pages=200)
    assert config.hotfolders == ()
    assert (config.status.interval, config.status.max_interval) == (60, 900)
    assert config.inbound is None and config.smtp is None
    assert config.metrics.listen is None
    assert config.logging.level is LogLevel.INFO
    assert config.warnings == ()


def test_account_given_as_yaml_integer_becomes_a_string() -> None:
    config = parse("faxde: {account: 12345, password_env: FAXDE_PASSWORD}")
    assert config.faxde.account == "12345"


@pytest.mark.parametrize(
    ("keys", "watch"),
    [
        ("{}", WatchMode.AUTO),
        ("{watch: events}", WatchMode.EVENTS),
        ("{watch: poll, poll_interval: 30s}", WatchMode.POLL),
        ("{polling: true}", WatchMode.POLL),  # the older spelling
        ("{polling: true, watch: poll}", WatchMode.POLL),
        ("{polling: false, watch: events}", WatchMode.EVENTS),
    ],
)
def test_how_a_hotfolder_is_watched(tmp_path: Path, keys: str, watch: WatchMode) -> None:
    [folder] = parse(f"hotfolders: [{{path: out, {keys[1:-1]}}}]", base_dir=tmp_path).hotfolders
    assert folder.watch is watch
    assert folder.polling is (watch is WatchMode.POLL)


def test_hotfolder_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = parse(
        """
        hotfolders:
          - path: out
          - path: /srv/sms
            job_type: sms
            recipient: "0171 1234567"
            sent_dir: /archive/sms
            failed_dir: ../failed-sms
            options: {FLASHSMS: true, SMSFROM: ACME}
        """,
        base_dir=tmp_path,
    )
    fax, sms = config.hotfolders
    assert fax.path == tmp_path / "out"
    assert fax.job_type is JobType.FAX and fax.recipient is None and fax.options == ()
    assert fax.sent_dir == tmp_path / "out" / "sent"
    assert fax.failed_dir == tmp_path / "out" / "failed"
    assert (fax.settle_time, fax.polling, fax.poll_interval, fax.rescan_interval) == (2, False, 5, 300)
    assert fax.watch is WatchMode.AUTO
    assert fax.text == ""
    assert sms.recipient == "+491711234567"
    assert sms.sent_dir == Path("/archive/sms")
    assert sms.failed_dir == Path("/srv/failed-sms")
    assert sms.options == (("FLASHSMS", ""), ("SMSFROM", "ACME"))


def test_smtp_defaults_and_state_dir_paths(tmp_path: Path) -> None:
    config = parse("state_dir: state\n" + smtp(), base_dir=tmp_path)
    s = config.smtp
    assert s is not None
    assert config.state_dir == tmp_path / "state"
    assert s.listen == HostPort("127.0.0.1", 2525) and str(s.listen) == "127.0.0.1:2525"
    assert s.domains == {"fax.example.com": JobType.FAX}
    assert s.job_type_for("FAX.Example.com.") is JobType.FAX
    assert s.relay is None and s.report_from == "faxbridge@localhost"
    assert (s.max_message_size, s.max_recipients, s.max_connections) == (25_000_000, 10, 20)
    assert s.rate_limit is not None and (s.rate_limit.messages, s.rate_limit.per) == (60, 3600)
    assert s.idle_timeout == 60 and s.body is BodyMode.AUTO
    assert s.data_timeout == 600 and s.trim_body is True
    assert s.multi_recipient is MultiRecipient.SEPARATE
    assert not s.tls.enabled and s.auth.users == {} and not s.auth.required
    assert s.archive_dir == tmp_path / "state" / "mail-archive"
    assert s.spool_dir == tmp_path / "state" / "spool"
    explicit = parse(smtp("  archive_dir: arch\n  spool_dir: /var/spool/fax\n  rate_limit: null\n"))
    assert explicit.smtp is not None
    assert explicit.smtp.archive_dir == Path("/var/lib/faxbridge/arch")
    assert explicit.smtp.spool_dir == Path("/var/spool/fax")
    assert explicit.smtp.rate_limit is None


def test_smtp_relay_forms() -> None:
    def relay(text: str, environ: dict[str, str] | None = None) -> Any:
        config = parse(smtp(f"  relay: {text}\n"), environ=environ)
        assert config.smtp is not None
        return config.smtp.relay

    assert (relay('"mail.example.com"').host, relay('"mail.example.com"').port) == ("mail.example.com", 25)
    assert relay('"[::1]:2525"').host == "::1" and relay('"[::1]:2525"').port == 2525
    full = relay(
        "{host: mail.example.com, port: 587, starttls: true, username: fax, password_env: RELAY_PW}",
        environ={**ENV, "RELAY_PW": "relay-pw"},
    )
    assert (full.port, full.starttls, full.username) == (587, True, "fax")
    assert full.password.reveal() == "relay-pw"


def test_sender_patterns() -> None:
    config = parse(
        "smtp:\n  domains: {fax.example.com: fax}\n"
        "  allowed_senders: ['alice@example.org', '*@example.com', '*@*.example.net']\n"
    )
    assert config.smtp is not None
    allowed = config.smtp.sender_allowed
    assert allowed("alice@example.org") and allowed("Alice@Example.ORG")
    assert not allowed("bob@example.org")
    assert allowed("bob@example.com") and not allowed("bob@sub.example.com")
    assert allowed("x@a.example.net") and not allowed("x@example.net")
    assert not allowed("x@evilexample.net")


def test_inbound_present_means_enabled_and_routes_inherit(tmp_path: Path) -> None:
    config = parse(
        """
        inbound:
          output: in
          pdf: true
          routes:
            - {called_number: "040 12345", output: sales}
            - {called_number: "+49 30 123456", pdf: false, mail_to: [a@example.com]}
        smtp:
          domains: {fax.example.com: fax}
          allowed_senders: ['*@example.com']
          relay: localhost:25
        """,
        base_dir=tmp_path,
    )
    inbound = config.inbound
    assert isinstance(inbound, InboundConfig)
    assert inbound.output == tmp_path / "in"
    assert (inbound.interval, inbound.max_per_run, inbound.max_size) == (60, 50, 50_000_000)
    assert inbound.filename == "{received:%Y%m%d-%H%M%S}_{originator}_{fax_id}.tif"
    first, second = inbound.routes
    assert first.called_number == "+494012345" and first.output == tmp_path / "sales" and first.pdf
    assert second.output == tmp_path / "in" and not second.pdf
    assert second.mail_to == ("a@example.com",)
    assert inbound.route_for("+4930123456") is second and inbound.route_for("+4940999") is None


def test_inbound_enabled_false_is_validated_but_off() -> None:
    assert parse("inbound: {enabled: false, output: /srv/in}").inbound is None
    with pytest.raises(ConfigError) as info:
        parse("inbound: {enabled: false}")
    assert info.value.path == "inbound.output"


def test_metrics_and_logging() -> None:
    config = parse('metrics: {listen: "[::1]:9465"}\nlogging: {level: WARNING}')
    assert config.metrics.listen == HostPort("::1", 9465)
    assert str(config.metrics.listen) == "[::1]:9465"
    assert config.logging.level is LogLevel.WARNING


def test_config_is_frozen() -> None:
    config = parse(smtp(f"  auth: {{users: {{alice: '{HASH}'}}}}\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.state_dir = Path("/tmp")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.faxde.timeout = 1  # type: ignore[misc]
    assert config.smtp is not None
    with pytest.raises(TypeError):
        config.smtp.domains["evil.example.com"] = JobType.FAX  # type: ignore[index]
    with pytest.raises(TypeError):
        config.smtp.auth.users.clear()  # type: ignore[attr-defined]
    assert isinstance(config.smtp.domains, FrozenDict)
    # asdict copies every leaf; secrets and frozen mappings survive it (and stay masked).
    assert PASSWORD not in repr(dataclasses.asdict(config))


# --------------------------------------------------------------------------------------------------
# Errors: key path and problem

BAD = [
    # (yaml, path, problem fragment)
    ("hotfolders: [{path: /a}, {path: /b, job_type: letter}]", "hotfolders[1].job_type",
     "expected one of fax, sms, email, iletter, iletter-color, qsign; got 'letter'"),
    (smtp("  listn: '127.0.0.1:25'\n"), "smtp.listn", "unknown key (did you mean 'listen'?)"),
    ("stat_dir: /x", "stat_dir", "unknown key (did you mean 'state_dir'?)"),
    ("bogus: 1", "bogus", "unknown key (known: "),
    ("journal: {retension: 1d}", "journal.retension", "did you mean 'retention'?"),
    ("hotfolders: [{path: /a, sentdir: s}]", "hotfolders[0].sentdir", "did you mean 'sent_dir'?"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, timout: 5s}", "faxde.timout",
     "did you mean 'timeout'?"),
    ("numbers: {Default_Country: DE}", "numbers.Default_Country", "did you mean 'default_country'?"),
    # faxde
    ("faxde: {password_env: FAXDE_PASSWORD}", "faxde.account", "required"),
    ("faxde: {account: '', password_env: FAXDE_PASSWORD}", "faxde.account", "must not be empty"),
    ("faxde: {account: true, password_env: FAXDE_PASSWORD}", "faxde.account", "expected a string; got true"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, concurrency: true}", "faxde.concurrency",
     "expected an integer; got true"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, concurrency: 0}", "faxde.concurrency",
     "expected 1 to 64; got 0"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, concurrency: 2.5}", "faxde.concurrency",
     "expected an integer; got 2.5"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, concurrency: '4'}", "faxde.concurrency",
     "expected an integer; got '4'"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, timeout: 0}", "faxde.timeout",
     "must be more than zero"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, timeout: soon}", "faxde.timeout",
     "expected a duration like 90s, 5m, 2h, 1d or 500ms; got 'soon'"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, endpoint: 'ftp://x'}", "faxde.endpoint",
     "expected an http:// or https:// URL"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, wsdl: missing.wsdl}", "faxde.wsdl",
     "no such file: /etc/faxbridge/missing.wsdl"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, retry: {max_attempts: 0}}",
     "faxde.retry.max_attempts", "expected 1 to 1000; got 0"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, retry: {initial_delay: 2h}}",
     "faxde.retry.max_delay", "1h is less than initial_delay (2h)"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, retry: 5}", "faxde.retry",
     "expected a mapping; got 5"),
    ("faxde: [1, 2]", "faxde", "expected a mapping; got a list"),
    ("state_dir: 5", "state_dir", "expected a string; got 5"),
    ("state_dir: ''", "state_dir", "must not be empty"),
    # numbers
    ("numbers: {default_country: XX}", "numbers.default_country", "two-letter ISO 3166 country code"),
    ("numbers: {default_country: Germany}", "numbers.default_country", "got 'Germany'"),
    ("numbers: {allowed_countries: DE}", "numbers.allowed_countries", "expected a list; got 'DE'"),
    ("numbers: {allowed_countries: [DE, ZZ]}", "numbers.allowed_countries[1]", "got 'ZZ'"),
    ("numbers: {allowed_countries: []}", "numbers.allowed_countries", "empty"),
    ("numbers: {allowed_countries: ['*', DE]}", "numbers.allowed_countries", "'*' already allows"),
    # journal, documents, status
    ("journal: {duplicate_window: 2d, retention: 1d}", "journal.retention",
     "1d is shorter than duplicate_window (2d)"),
    ("journal: {duplicate_window: -5}", "journal.duplicate_window", "zero or more"),
    ("documents: {max_size: 10M}", "documents.max_size", "expected a size like 20MB, 512KiB"),
    ("documents: {max_size: 0}", "documents.max_size", "must be more than zero"),
    ("documents: {max_pages: 0}", "documents.max_pages", "expected 1 to 100000; got 0"),
    ("status: {interval: 5m, max_interval: 1m}", "status.max_interval", "1m is less than interval (5m)"),
    # hotfolders
    ("hotfolders: {path: /a}", "hotfolders", "expected a list of hotfolders; got a mapping"),
    ("hotfolders: [/a]", "hotfolders[0]", "expected a mapping; got '/a'"),
    ("hotfolders: [{job_type: fax}]", "hotfolders[0].path", "required"),
    ("hotfolders: [{path: /a}, {path: /b}, {path: /a/}]", "hotfolders[2].path",
     "same folder as hotfolders[0].path"),
    ("hotfolders: [{path: /a, polling: yes please}]", "hotfolders[0].polling",
     "expected true or false; got 'yes please'"),
    ("hotfolders: [{path: /a, polling: 1}]", "hotfolders[0].polling", "expected true or false; got 1"),
    ("hotfolders: [{path: /a, poll_interval: 0s}]", "hotfolders[0].poll_interval", "more than zero"),
    ("hotfolders: [{path: /a, watch: inotify}]", "hotfolders[0].watch",
     "expected one of auto, events, poll; got 'inotify'"),
    ("hotfolders: [{path: /a, watch: events, polling: true}]", "hotfolders[0].polling",
     "true contradicts watch: events"),
    ("hotfolders: [{path: /a, recipient: 4940123456}]", "hotfolders[0].recipient",
     "quote numbers in YAML"),
    ("hotfolders: [{path: /a, recipient: '0900 1 234567'}]", "hotfolders[0].recipient",
     "premium-rate number (0900)"),
    ("hotfolders: [{path: /a, recipient: '+44 20 7123 4567'}]", "hotfolders[0].recipient",
     "country GB (+44) is not in numbers.allowed_countries"),
    ("hotfolders: [{path: /a, job_type: sms, recipient: '040 123456'}]", "hotfolders[0].recipient",
     "SMS needs a mobile number"),
    ("hotfolders: [{path: /a, job_type: email, recipient: 'not-an-address'}]", "hotfolders[0].recipient",
     "expected a mail address"),
    ("hotfolders: [{path: /a, job_type: iletter, recipient: '040 123456'}]", "hotfolders[0].recipient",
     "not used for iletter"),
    ("hotfolders: [{path: /a, sent_dir: x, failed_dir: x}]", "hotfolders[0].failed_dir",
     "same folder as sent_dir"),
    ("hotfolders: [{path: /a, sent_dir: .}]", "hotfolders[0].sent_dir", "is the hotfolder itself"),
    ("hotfolders: [{path: /a, sent_dir: /b}, {path: /b}]", "hotfolders[0].sent_dir",
     "is hotfolders[1].path"),
    ("hotfolders: [{path: /a, text: 5}]", "hotfolders[0].text", "expected a string; got 5"),
    # hotfolder options (FAXDE-API.md, "Parameter Options")
    ("hotfolders: [{path: /a, options: {STATIONID: 'ACME;FAXRETRY=9'}}]", "hotfolders[0].options.STATIONID",
     "must not contain ';'"),
    ("hotfolders: [{path: /a, options: {STATIONID: 'A very long station id!'}}]",
     "hotfolders[0].options.STATIONID", "at most 20 characters; got 23"),
    ("hotfolders: [{path: /a, options: {stationid: ACME}}]", "hotfolders[0].options.stationid",
     "unknown key (did you mean 'STATIONID'?)"),
    ("hotfolders: [{path: /a, options: {COLOR: yes}}]", "hotfolders[0].options.COLOR", "unknown key"),
    ("hotfolders: [{path: /a, options: {FAXHEADER: '0123456789012345678901234567890'}}]",
     "hotfolders[0].options.FAXHEADER", "at most 30 characters"),
    ("hotfolders: [{path: /a, options: {FAXRETRY: many}}]", "hotfolders[0].options.FAXRETRY",
     "expected a number of retries"),
    ("hotfolders: [{path: /a, options: {FAXRETRY: true}}]", "hotfolders[0].options.FAXRETRY",
     "expected a string; got true"),
    ("hotfolders: [{path: /a, options: {FLASHSMS: true}}]", "hotfolders[0].options.FLASHSMS",
     "applies to job type sms only, not fax"),
    ("hotfolders: [{path: /a, job_type: sms, options: {FLASHSMS: sometimes}}]",
     "hotfolders[0].options.FLASHSMS", "expected true or false; got 'sometimes'"),
    ("hotfolders: [{path: /a, job_type: sms, options: {SMSFROM: 'ACME Corporation'}}]",
     "hotfolders[0].options.SMSFROM", "up to 16 digits, or up to 11 letters"),
    ("hotfolders: [{path: /a, job_type: sms, options: {SMSFROM: '12345678901234567'}}]",
     "hotfolders[0].options.SMSFROM", "up to 16 digits"),
    ("hotfolders: [{path: /a, job_type: email, options: {MAILFROM: nobody}}]",
     "hotfolders[0].options.MAILFROM", "expected a mail address"),
    ("hotfolders: [{path: /a, options: {MAILFROM: a@example.com}}]", "hotfolders[0].options.MAILFROM",
     "applies to job type email, qsign only"),
    ("hotfolders: [{path: /a, options: {CALLERID: 'call me'}}]", "hotfolders[0].options.CALLERID",
     "expected a phone number"),
    ("hotfolders: [{path: /a, options: {STATURL: 'https://example.com/?a=b c'}}]",
     "hotfolders[0].options.STATURL", "must not contain spaces"),
    ("hotfolders: [{path: /a, options: {STATURL: 'https://example.com/" + "x" * 120 + "'}}]",
     "hotfolders[0].options.STATURL", "at most 128 characters"),
    ("hotfolders: [{path: /a, options: {FAXHEADER: \"two\\nlines\"}}]", "hotfolders[0].options.FAXHEADER",
     "line breaks"),
    ("hotfolders: [{path: /a, options: [STATIONID]}]", "hotfolders[0].options", "expected a mapping"),
    # inbound
    ("inbound: {output: /in, interval: 0}", "inbound.interval", "more than zero"),
    ("inbound: {output: /in, enabled: 'no'}", "inbound.enabled", "expected true or false; got 'no'"),
    ("inbound: {output: /in, filename: '{sender}.tif'}", "inbound.filename",
     "unknown field {sender} (known: received, fax_id, originator"),
    ("inbound: {output: /in, filename: '{}.tif'}", "inbound.filename", "unknown field {}"),
    ("inbound: {output: /in, filename: '{fax_id:%Y}.tif'}", "inbound.filename", "cannot be filled in"),
    ("inbound: {output: /in, filename: '{received:%Y}/{fax_id}.tif'}", "inbound.filename",
     "must make a plain file name"),
    ("inbound: {output: /in, filename: '{fax_id.tif'}", "inbound.filename", "not a valid template"),
    ("inbound: {output: /in, max_per_run: 0}", "inbound.max_per_run", "expected 1 to 10000"),
    ("inbound: {output: /in, routes: [{output: /x}]}", "inbound.routes[0].called_number", "required"),
    ("inbound: {output: /in, routes: [{called_number: 494012345}]}", "inbound.routes[0].called_number",
     "quote numbers"),
    ("inbound: {output: /in, routes: [{called_number: '12'}]}", "inbound.routes[0].called_number",
     "not a valid phone number"),
    ("inbound: {output: /in, routes: [{called_number: '040 12345'}, {called_number: '+494012345'}]}",
     "inbound.routes[1].called_number", "+494012345 already has a route (inbound.routes[0])"),
    ("inbound: {output: /in, routes: [{called_number: '040 12345', mail_to: [x]}]}",
     "inbound.routes[0].mail_to[0]", "expected a mail address"),
    ("inbound: {output: /in, routes: [{called_number: '040 12345', mail_to: [a@example.com]}]}",
     "inbound.routes[0].mail_to", "needs smtp.relay"),
    ("inbound: {output: /in, routes: [{called_number: '040 12345', color: red}]}",
     "inbound.routes[0].color", "unknown key"),
    ("hotfolders: [{path: /srv/fax}]\ninbound: {output: /srv/fax}", "inbound.output",
     "overlaps hotfolders[0].path (/srv/fax): received faxes would be sent out again"),
    ("hotfolders: [{path: /srv/fax}]\ninbound: {output: /srv/fax/in}", "inbound.output",
     "overlaps hotfolders[0].path"),
    ("hotfolders: [{path: /srv/fax/out}]\ninbound: {output: /srv/fax}", "inbound.output",
     "overlaps hotfolders[0].path"),
    ("hotfolders: [{path: /srv/out}]\ninbound: {output: /srv/in, routes: [{called_number: '040 1234',"
     " output: /srv/out/x}]}", "inbound.routes[0].output", "overlaps hotfolders[0].path"),
    # smtp
    ("smtp: {allowed_senders: ['*@example.com']}", "smtp.domains", "required"),
    ("smtp: {domains: {}}", "smtp.domains", "required"),
    ("smtp: {domains: {fax.example.com: letter}, allowed_senders: ['*@example.com']}",
     "smtp.domains.fax.example.com", "expected one of fax, sms"),
    ("smtp: {domains: {'fax example': fax}, allowed_senders: ['*@example.com']}",
     "smtp.domains.fax example", "expected a domain name"),
    ("smtp: {domains: {Fax.Example.com: fax, fax.example.com: sms}, allowed_senders: ['*@example.com']}",
     "smtp.domains.fax.example.com", "listed twice"),
    ("smtp: {domains: {fax.example.com: fax}}", "smtp.allowed_senders", "nobody could send"),
    (smtp("  listen: 2525\n"), "smtp.listen", "expected a string; got 2525"),
    (smtp("  listen: ':2525'\n"), "smtp.listen", "expected host:port"),
    (smtp("  listen: 'localhost'\n"), "smtp.listen", "the port is missing"),
    (smtp("  listen: '::1:2525'\n"), "smtp.listen", "put IPv6 addresses in brackets"),
    (smtp("  listen: '[example.com]:25'\n"), "smtp.listen", "expected host:port"),
    (smtp("  listen: '127.0.0.1:70000'\n"), "smtp.listen", "port 70000 is out of range"),
    (smtp("  listen: 'bad_host:25'\n"), "smtp.listen", "expected a host name or IP address"),
    ("smtp: {domains: {fax.example.com: fax}, allowed_senders: ['*']}", "smtp.allowed_senders[0]",
     "expected a sender like alice@example.com"),
    ("smtp: {domains: {fax.example.com: fax}, allowed_senders: ['*@*']}", "smtp.allowed_senders[0]",
     "expected a sender"),
    ("smtp: {domains: {fax.example.com: fax}, allowed_senders: '*@example.com'}",
     "smtp.allowed_senders", "expected a list"),
    (smtp("  relay: 'mail.example.com:0'\n"), "smtp.relay", "port 0 is out of range"),
    (smtp("  relay: {port: 25}\n"), "smtp.relay.host", "required"),
    (smtp("  relay: {host: mx, username: fax}\n"), "smtp.relay.password_file", "give the password too"),
    (smtp("  relay: {host: mx, password_env: FAXDE_PASSWORD}\n"), "smtp.relay.username",
     "give the user name too"),
    (smtp("  relay: {host: mx, prot: 25}\n"), "smtp.relay.prot", "did you mean 'port'?"),
    (smtp("  report_from: faxbridge\n"), "smtp.report_from", "expected a mail address"),
    (smtp("  max_recipients: 0\n"), "smtp.max_recipients", "expected 1 to 1000"),
    (smtp("  rate_limit: {messages: 10, per: never}\n"), "smtp.rate_limit.per", "expected a duration"),
    (smtp("  body: attach\n"), "smtp.body", "expected one of cover, ignore, auto; got 'attach'"),
    (smtp("  multi_recipient: all\n"), "smtp.multi_recipient", "expected one of separate, combined"),
    (smtp("  data_timeout: 0s\n"), "smtp.data_timeout", "must be more than zero"),
    (smtp("  trim_body: yes please\n"), "smtp.trim_body", "true or false"),
    (smtp("  tls: {cert: /nonexistent/cert.pem}\n"), "smtp.tls.key", "required when the other"),
    (smtp("  tls: {cert: /nonexistent/c.pem, key: /nonexistent/k.pem}\n"), "smtp.tls.cert",
     "no such file: /nonexistent/c.pem"),
    (smtp("  auth: {users: {alice: plaintext-password}}\n"), "smtp.auth.users.alice",
     "expected a password hash like $pbkdf2-sha256$"),
    (smtp(f"  auth: {{users: {{'al ice': '{HASH}'}}}}\n"), "smtp.auth.users.al ice",
     "without spaces or ':'"),
    (smtp("  auth: {required: true}\n"), "smtp.auth.required", "smtp.auth has no users"),
    # Issue 15: accepted by check-config, then refused by the daemon at start.
    (smtp(f"  auth: {{users: {{alice: '{HASH}'}}, required: true}}\n"), "smtp.auth.required",
     "needs smtp.tls"),
    (smtp("  auth: {password_file: /nonexistent/users}\n"), "smtp.auth.password_file", "cannot read"),
    (smtp("metrics: {listen: '127.0.0.1:2525'}\n"), "metrics.listen", "same address as smtp.listen"),
    # metrics, logging
    ("metrics: {listen: 9465}", "metrics.listen", "expected a string; got 9465"),
    ("metrics: {port: 9465}", "metrics.port", "unknown key"),
    ("logging: {level: verbose}", "logging.level", "expected one of debug, info, warning, error; got 'verbose'"),
    ("logging: {level: 10}", "logging.level", "got 10"),
    # secrets (the value never appears: see test_secret_never_in_error_messages)
    ("faxde: {account: '1'}", "faxde", "no password: set password_file, password_env or password"),
    ("faxde: {account: '1', password_env: FAXDE_PASSWORD, password: x}", "faxde",
     "give only one of password_file, password_env, password; got password_env, password"),
    ("faxde: {account: '1', password_env: NOT_SET}", "faxde.password_env",
     "environment variable NOT_SET is not set"),
    ("faxde: {account: '1', password_env: 'not a name'}", "faxde.password_env",
     "expected an environment variable name"),
    ("faxde: {account: '1', password_file: /nonexistent/pw}", "faxde.password_file",
     "cannot read /nonexistent/pw"),
    ("faxde: {account: '1', password: ''}", "faxde.password", "is empty"),
    # the file as a whole
    ("- a list", "", "expected a mapping of sections (faxde:, smtp: …); got a list"),
    ("logging: {level: info}", "faxde", "required section is missing"),
]


@pytest.mark.parametrize(("text", "path", "problem"), BAD)
def test_bad_config(text: str, path: str, problem: str) -> None:
    data = yaml.safe_load(textwrap.dedent(text))
    if isinstance(data, dict) and "faxde" not in data and path != "faxde":
        data = {**yaml.safe_load(FAXDE), **data}
    with pytest.raises(ConfigError) as info:
        parse_config(data, Path("/etc/faxbridge"), environ=ENV)
    assert info.value.path == path
    assert problem in info.value.problem
    assert str(info.value) == (f"{path}: {info.value.problem}" if path else info.value.problem)


# --------------------------------------------------------------------------------------------------
# Durations and sizes


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0), (1.5, 1.5), (0, 0.0), ("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("2h", 7200.0),
        ("1d", 86400.0), ("500ms", 0.5), ("1h30m", 5400.0), ("1d12h", 129600.0), ("2.5s", 2.5),
        (" 10 s ", 10.0), ("5M", 300.0), ("0s", 0.0), ("90d", 7776000.0), ("1m30s500ms", 90.5),
    ],
)  # fmt: skip
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["", "soon", "-5s", "5x", "s", "1.5.5s", "5 minutes", "1h 30", True, False, None, [5],
     -1, float("nan"), float("inf"), "5s5"],
)  # fmt: skip
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024), (0, 0), ("100", 100), ("100B", 100), ("10KB", 10_000), ("10MB", 10_000_000),
        ("20 MB", 20_000_000), ("20mb", 20_000_000), ("1.5GB", 1_500_000_000), ("1TB", 10**12),
        ("512KiB", 524_288), ("1MiB", 1_048_576), ("2GiB", 2 * 2**30), ("1.5KiB", 1536),
        ("1kib", 1024),
    ],
)  # fmt: skip
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value", ["", "big", "10M", "10 megabytes", "1.5.5MB", "-1MB", True, None, 1.5, -1, [1], "MB"]
)
def test_parse_size_refuses(value: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


# --------------------------------------------------------------------------------------------------
# Options, addresses


def test_validate_options_for_each_job_type() -> None:
    assert validate_options(
        {"STATIONID": "ACME", "FAXHEADER": "ACME GmbH, Hamburg", "FAXRETRY": 3, "CALLERID": "+4940123"},
        JobType.FAX,
    ) == (("STATIONID", "ACME"), ("FAXHEADER", "ACME GmbH, Hamburg"), ("FAXRETRY", "3"),
          ("CALLERID", "+4940123"))  # fmt: skip
    assert validate_options({"FLASHSMS": False, "SMSFROM": 4917012345678}, JobType.SMS) == (
        ("SMSFROM", "4917012345678"),
    )
    assert validate_options({"FLASHSMS": None}, JobType.SMS) == (("FLASHSMS", ""),)
    assert validate_options({"MAILFROM": "fax@example.com"}, JobType.QSIGN) == (
        ("MAILFROM", "fax@example.com"),
    )
    url = "https://example.com/s?job=$JID&stat=$STAT"
    for job_type in JobType:
        assert validate_options({"STATURL": url}, job_type) == (("STATURL", url),)
    with pytest.raises(ConfigError) as info:
        validate_options({"SMSFROM": "ACME"}, JobType.FAX, "smtp.options")
    assert info.value.path == "smtp.options.SMSFROM"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:2525", "127.0.0.1", 2525),
        ("[::1]:2525", "::1", 2525),
        ("[::]:25", "::", 25),
        ("localhost:25", "localhost", 25),
        ("Mail.Example.COM:587", "mail.example.com", 587),
        ("0.0.0.0:0", "0.0.0.0", 0),  # port 0: any free port (tests)
    ],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    config = parse(f"metrics: {{listen: '{text}'}}")
    assert config.metrics.listen == HostPort(host, port)


def test_auth_users_from_config_and_password_file(tmp_path: Path) -> None:
    (tmp_path / "users").write_text(f"# faxbridge users\n\nbob:{HASH}\n")
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    config = parse(
        smtp(f"  tls: {{cert: c.pem, key: k.pem}}\n  auth: {{users: {{alice: '{HASH}'}},"
             " password_file: users, required: true}\n  listen: '0.0.0.0:25'\n"),
        base_dir=tmp_path,
    )
    assert config.smtp is not None
    auth = config.smtp.auth
    assert set(auth.users) == {"alice", "bob"} and auth.required
    assert auth.users["bob"].reveal() == HASH
    assert auth.password_file == tmp_path / "users"
    assert config.smtp.tls.enabled and config.smtp.tls.key == tmp_path / "k.pem"
    assert config.warnings == ()
    assert HASH not in repr(config)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("alice\n", "line 1: expected 'user:$pbkdf2-sha256$…'"),
        ("alice:password\n", "line 1: expected"),
        (f"# c\nalice:{HASH}\nalice:{HASH}\n", "line 3: user 'alice' is defined twice"),
    ],
)
def test_auth_password_file_errors(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "users").write_text(content)
    with pytest.raises(ConfigError) as info:
        parse(smtp("  auth: {password_file: users}\n"), base_dir=tmp_path)
    assert info.value.path == "smtp.auth.password_file"
    assert problem in info.value.problem
    assert "password\n" not in str(info.value)


def test_auth_in_clear_text_off_loopback_is_warned() -> None:
    config = parse(smtp(f"  listen: '0.0.0.0:25'\n  auth: {{users: {{alice: '{HASH}'}}}}\n"))
    assert any("clear text" in w for w in config.warnings)
    assert parse(smtp(f"  auth: {{users: {{alice: '{HASH}'}}}}\n")).warnings == ()


def test_default_country_outside_allowed_countries_is_warned() -> None:
    config = parse("numbers: {default_country: AT, allowed_countries: [DE]}")
    assert any("numbers.default_country: AT is not in allowed_countries" in w for w in config.warnings)
    assert parse("numbers: {default_country: null, allowed_countries: ['*']}").warnings == ()


def test_filename_without_fax_id_is_warned() -> None:
    config = parse("inbound: {output: /in, filename: '{received:%Y%m%d}_{originator}.tif'}")
    assert any("inbound.filename" in w and "{fax_id}" in w for w in config.warnings)


def test_numbers_section() -> None:
    config = parse("numbers: {default_country: at, allowed_countries: [AT, de]}")
    assert config.numbers.default_country == "AT"
    assert config.numbers.allowed_countries == frozenset({"AT", "DE"})
    assert config.numbers.policy().normalize("01 9001") == "+4319001"
    anywhere = parse("numbers: {allowed_countries: ['*']}").numbers.policy()
    assert anywhere.normalize("+44 20 7123 4567") == "+442071234567"


# --------------------------------------------------------------------------------------------------
# Secrets


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_password_file_relative_to_the_config_and_one_newline_stripped(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)
    config = load_config(
        write_config(tmp_path, 'faxde: {account: "1", password_file: pw}\n'), environ={}
    )
    assert config.faxde.password.reveal() == PASSWORD
    assert config.faxde.password.source == f"file {tmp_path / 'pw'}"
    assert config.warnings == ()
    assert config.source == tmp_path / "config.yaml"


@pytest.mark.parametrize(
    ("content", "expected"),
    [("pw", "pw"), ("pw\n", "pw"), ("pw\r\n", "pw"), (" pw \n", " pw "), ("pw\n\n", None), ("\n", None),
     ("", None), ("a\nb\n", None)],
)  # fmt: skip
def test_password_file_contents(tmp_path: Path, content: str, expected: str | None) -> None:
    (tmp_path / "pw").write_bytes(content.encode())
    (tmp_path / "pw").chmod(0o600)
    data = {"faxde": {"account": "1", "password_file": "pw"}}
    if expected is None:
        with pytest.raises(ConfigError) as info:
            parse_config(data, tmp_path, environ={})
        assert info.value.path == "faxde.password_file"
        assert "empty" in info.value.problem or "more than one line" in info.value.problem
    else:
        assert parse_config(data, tmp_path, environ={}).faxde.password.reveal() == expected


def test_world_readable_password_file_is_warned(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD)
    (tmp_path / "pw").chmod(0o644)
    config = parse_config({"faxde": {"account": "1", "password_file": "pw"}}, tmp_path, environ={})
    assert any("readable by every user" in w for w in config.warnings)


def test_password_env() -> None:
    config = parse("", environ={"FAXDE_PASSWORD": PASSWORD})
    assert config.faxde.password.reveal() == PASSWORD
    assert config.faxde.password.source == "environment variable FAXDE_PASSWORD"
    with pytest.raises(ConfigError) as info:
        parse("", environ={"FAXDE_PASSWORD": ""})
    assert info.value.path == "faxde.password_env" and "is empty" in info.value.problem


def test_password_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXBRIDGE_TEST_PW", PASSWORD)
    data = {"faxde": {"account": "1", "password_env": "FAXBRIDGE_TEST_PW"}}
    assert parse_config(data, Path("/")).faxde.password.reveal() == PASSWORD


def test_literal_password_is_allowed_with_a_warning() -> None:
    config = parse(f"faxde: {{account: '1', password: '{PASSWORD}'}}", environ={})
    assert config.faxde.password.reveal() == PASSWORD
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith("faxde.password: the password is written in the config file")
    assert PASSWORD not in config.warnings[0]


def test_systemd_credential_when_no_password_is_configured(tmp_path: Path) -> None:
    (tmp_path / "faxde-password").write_text(PASSWORD + "\n")
    (tmp_path / "faxde-password").chmod(0o400)
    config = parse("faxde: {account: '1'}", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.faxde.password.reveal() == PASSWORD
    assert config.faxde.password.source == "systemd credential faxde-password"
    # A credentials directory without that credential is no password at all.
    (tmp_path / "faxde-password").unlink()
    with pytest.raises(ConfigError) as info:
        parse("faxde: {account: '1'}", environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert info.value.path == "faxde" and "systemd credential named faxde-password" in info.value.problem
    # An explicit source wins over the credential.
    (tmp_path / "faxde-password").write_text("other")
    config = parse("", environ={**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.faxde.password.reveal() == PASSWORD


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    config = parse(
        smtp(
            "  relay: {host: mx, username: u, password_env: RELAY_PW}\n"
            f"  auth: {{users: {{alice: '{HASH}'}}}}\n"
        ),
        environ={**ENV, "RELAY_PW": "relay-secret"},
    )
    for text in (repr(config), str(config), repr(config.faxde), f"{config.faxde.password}",
                 repr(config.smtp), repr(dataclasses.asdict(config))):  # fmt: skip
        assert PASSWORD not in text and "relay-secret" not in text and HASH not in text
    assert repr(config.faxde.password) == "'***'" and str(config.faxde.password) == "***"
    assert {s.reveal() for s in config.secrets()} == {PASSWORD, "relay-secret", HASH}
    assert Secret("a") == Secret("a") != Secret("b")
    with pytest.raises(TypeError):
        pickle.dumps(config.faxde.password)


def test_secret_never_in_error_messages() -> None:
    for text in (
        "faxde: {account: '1', password: 31415926}",  # not a string: the value is not echoed
        "faxde: {account: '1', password_file: 31415926}",
    ):
        with pytest.raises(ConfigError) as info:
            parse(text, environ={})
        assert "31415926" not in str(info.value)
        assert "quote it" in info.value.problem
    with pytest.raises(ConfigError) as info:
        parse(smtp("  auth: {users: {alice: hunter2hunter2}}\n"))
    assert "hunter2" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# Files and YAML


def test_load_config_never_exits(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in str(info.value) and "missing.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="is empty"):
        load_config(write_config(tmp_path, "# nothing\n"))
    (tmp_path / "latin1.yaml").write_bytes("faxde: {account: 'ü'}".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "latin1.yaml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("faxde: !!python/object/apply:os.system ['echo pwned']\n", "YAML tag '!!python/object/apply:os.system' is not allowed"),
        ("faxde: !!python/name:os.system\n", "YAML tag '!!python/name:os.system' is not allowed"),
        ("state_dir: !!python/object:pathlib.Path {}\n", "is not allowed"),
        ("faxde: !custom {a: 1}\n", "YAML tag '!custom' is not allowed"),
        ("faxde: [1, 2\n", "not valid YAML"),
        ("faxde:\n  account: '1'\n   bad: indent\n", "not valid YAML"),
        ("faxde: {account: '1'}\nfaxde: {account: '2'}\n", "line 2: key 'faxde' appears twice (first on line 1)"),
        ("faxde:\n  account: '1'\n  account: '2'\n", "line 3: key 'account' appears twice"),
    ],
)
def test_unsafe_or_broken_yaml(tmp_path: Path, text: str, fragment: str) -> None:
    marker = tmp_path / "pwned"
    path = write_config(tmp_path, text.replace("echo pwned", f"touch {marker}"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        """
        faxde: {account: "1", password_env: FAXDE_PASSWORD}
        hotfolders:
          - &fax {path: /srv/a, settle_time: 5s, options: {STATIONID: ACME}}
          - <<: *fax
            path: /srv/b
        """,
    )
    a, b = load_config(path, environ=ENV).hotfolders
    assert (a.path, b.path) == (Path("/srv/a"), Path("/srv/b"))
    assert b.settle_time == 5 and b.options == (("STATIONID", "ACME"),)


def test_check_config_returns_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXBRIDGE_TEST_PW", PASSWORD)
    path = write_config(tmp_path, "faxde: {account: '1', password: literal}\n")
    config, warnings = check_config(path)
    assert config.faxde.account == "1"
    assert warnings == list(config.warnings) and len(warnings) == 1


# --------------------------------------------------------------------------------------------------
# config.example.yaml: loads, and documents every key


def _dataclasses_in(cls: type, seen: set[type] | None = None) -> set[type]:
    """cls and every dataclass reachable through its field types."""
    seen = set() if seen is None else seen
    if cls in seen:
        return seen
    seen.add(cls)
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        stack = [hints[spec.name]]
        while stack:
            hint = stack.pop()
            # Sections are the config module's own; value types from elsewhere (HoldRule) are not.
            if dataclasses.is_dataclass(hint) and isinstance(hint, type) and hint.__module__ == cls.__module__:
                _dataclasses_in(hint, seen)
            stack.extend(typing.get_args(hint))
    return seen


def test_example_config_loads() -> None:
    config = load_config(REPO / "config.example.yaml", environ=ENV)
    assert config.faxde.password.reveal() == PASSWORD
    assert config.warnings == ()
    assert config.hotfolders and config.smtp is not None
    assert config.inbound is None  # enabled: false in the example, so copying it collects nothing
    # Its values are the defaults, so it documents them truthfully.
    defaults = parse("")
    for section in ("journal", "documents", "convert", "status", "numbers", "metrics", "logging"):
        assert getattr(config, section) == getattr(defaults, section), section
    assert config.faxde.retry == defaults.faxde.retry
    assert dataclasses.replace(config.faxde, account="12345") == defaults.faxde
    assert config.hotfolders[0] == dataclasses.replace(
        HotfolderConfig(path=Path("/srv/fax/out")),
        options=(("STATIONID", "ACME"),),
        sent_dir=Path("/srv/fax/out/sent"),
        failed_dir=Path("/srv/fax/out/failed"),
    )
    smtp_defaults = SmtpConfig(domains=config.smtp.domains)
    for name in ("listen", "report_from", "max_message_size", "max_recipients", "rate_limit",
                 "max_connections", "idle_timeout", "data_timeout", "body", "trim_body",
                 "multi_recipient", "tls", "auth"):  # fmt: skip
        assert getattr(config.smtp, name) == getattr(smtp_defaults, name), name


def test_example_config_inbound_section_is_valid_when_enabled() -> None:
    data = yaml.safe_load((REPO / "config.example.yaml").read_text())
    data["inbound"]["enabled"] = True
    config = parse_config(data, REPO, environ=ENV)
    assert isinstance(config.inbound, InboundConfig)
    assert config.inbound.routes[0].mail_to == ("sales@example.com",)
    defaults = InboundConfig(output=Path("/srv/fax/in"))
    for name in ("interval", "max_per_run", "filename", "pdf", "max_size"):
        assert getattr(config.inbound, name) == getattr(defaults, name), name


def test_example_config_documents_every_key() -> None:
    text = (REPO / "config.example.yaml").read_text()
    documented = set(re.findall(r"^[\s#-]*([A-Za-z_]+):", text, re.MULTILINE))
    documented |= set(re.findall(r"[{,]\s*([A-Za-z_]+):", text))
    missing = []
    for cls in _dataclasses_in(Config):
        for spec in dataclasses.fields(cls):
            if not spec.metadata.get("derived") and spec.name not in documented:
                missing.append(f"{cls.__name__}.{spec.name}")
    # Keys the parser reads that are not dataclass fields.
    for key in ("password_file", "password_env", "password", "enabled", "host", "port", "starttls",
                "username", "STATIONID", "FAXHEADER", "FAXRETRY", "CALLERID", "SMSFROM", "FLASHSMS",
                "MAILFROM", "STATURL"):  # fmt: skip
        if key not in documented:
            missing.append(key)
    assert not missing, f"config.example.yaml does not document: {', '.join(sorted(missing))}"


def test_every_example_line_with_a_key_says_its_default() -> None:
    """Top-level keys of each section carry a comment; keeps the example self-explaining."""
    for number, line in enumerate((REPO / "config.example.yaml").read_text().splitlines(), 1):
        if re.match(r"^\s+[A-Za-z_]+:\s*\S", line) and not line.lstrip().startswith("#"):
            key = line.split(":")[0].strip()
            if key.isupper() or key in ("fax.example.com", "sms.example.com", "cert", "key"):
                continue
            assert "#" in line, f"line {number}: {key} has no comment"
