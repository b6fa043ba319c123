"""Turns the numbers users write into E.164, and refuses numbers that must never be dialled.

Every edge (hotfolder names, SMTP recipients, the simulator) goes through ``NumberPolicy.normalize``
or ``refusal_reason`` so that one rule decides.  The rule has three parts:

1. *Read, don't guess.*  Only harmless separators are stripped; anything that allows more than one
   reading (a national number without its trunk prefix 0, letters, two numbers, an extension
   marker, a trunk prefix written after the country code) is rejected with a reason.
2. *Refuse what costs money or reaches a service.*  Premium-rate, shared-cost, personal, paging,
   emergency and short numbers, satellite and other international networks are refused before
   any SendJob (FAX.de itself answers 45/46/47 only for some of them; FAXDE-API.md, "Results
   SendJob").  phonenumbers' classification does most of it; ``REFUSED_PREFIXES`` adds the German
   ranges it leaves "invalid" or misses.
3. *Stay inside the allowed countries* (``numbers.allowed_countries`` in the config).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType, ValidationResult
from phonenumbers import shortnumberinfo

from faxbridge.errors import NumberError

__all__ = [
    "ANY_COUNTRY",
    "INTERNATIONAL_NETWORKS",
    "REFUSED_PREFIXES",
    "NumberPolicy",
    "is_known_region",
    "refusal_reason",
]

ANY_COUNTRY: Final = "*"

_TOLL_FRAUD = "refused to protect against toll fraud"
_INVALID = "not a valid number"  # how every "cannot be read as a number" reason of _refusal starts

# German number ranges refused by prefix (E.164), longest prefix wins.  Source: the
# Bundesnetzagentur numbering plan; each comment says what phonenumbers 9.0 itself answers for a
# complete number of that range, i.e. why its classification alone is not enough.
REFUSED_PREFIXES: Final[dict[str, str]] = {
    # 0900 premium-rate services: PREMIUM_RATE when complete, but "invalid" for short or
    # mistyped forms (+49900123456), which must still read as premium-rate, not as a typo.
    "+49900": f"premium-rate number (0900) — {_TOLL_FRAUD}",
    # 0137 mass-call / televoting: phonenumbers says SHARED_COST; charged per call up to 1 €.
    "+49137": f"mass-call/televoting number (0137) — {_TOLL_FRAUD}",
    # 0138 mass-call services: "invalid" (not in its metadata at all).
    "+49138": f"mass-call number (0138) — {_TOLL_FRAUD}",
    # 0180 service numbers: SHARED_COST (0180-1 … 0180-7, tariffs differ per digit).
    "+49180": f"service number (0180) — {_TOLL_FRAUD}",
    # 0181 international virtual private networks: UAN; reachable only inside the VPN.
    "+49181": f"international VPN number (0181) — {_TOLL_FRAUD}",
    # 0700 personal (follow-me) numbers: PERSONAL_NUMBER; forwarded anywhere, at the caller's cost.
    "+49700": f"personal number (0700) — {_TOLL_FRAUD}",
    # 019x: 0190 (the retired premium range), 0191–0194 online services, 0199 network-internal
    # routing: all "invalid" for phonenumbers.
    "+4919": f"online/premium service number (019x) — {_TOLL_FRAUD}",
    # 012x innovative services: unregulated tariffs; "invalid" for phonenumbers.
    "+4912": f"innovative-services number (012) — {_TOLL_FRAUD}",
    # 010xx / 0100xx carrier selection (call-by-call): a prefix, not a subscriber number;
    # phonenumbers reads "01010 40 123456" as one long "invalid" number.
    "+4910": "carrier selection prefix (010xx call-by-call) — write the number without it",
    # 031 network test numbers (0310 long distance, 0311 local): "invalid" for phonenumbers.
    "+4931": "network test number (031) — cannot be dialled",
    # 0164, 0168, 0169 paging (e*message): PAGER; cannot take a fax or an SMS.
    "+49164": "paging number (0164) — cannot receive a fax or SMS",
    "+49168": "paging number (0168) — cannot receive a fax or SMS",
    "+49169": "paging number (0169) — cannot receive a fax or SMS",
    # 110 police and 112 fire/ambulance: short numbers; as "+49 110…" merely "invalid".
    "+49110": "emergency number (110) — never dialled by faxbridge",
    "+49112": "emergency number (112) — never dialled by faxbridge",
    # 115 public administration, 116xxx harmonised services of social value: short numbers.
    "+49115": "service number (115) — cannot be dialled via FAX.de",
    "+49116": "harmonised service number (116xxx) — cannot be dialled via FAX.de",
    # 118xx directory enquiries: short numbers, often expensive and able to forward calls.
    "+49118": f"directory enquiries (118xx) — {_TOLL_FRAUD}",
    # Not listed on purpose: 0800 toll-free (TOLL_FREE, fine for fax), 032 national subscriber
    # numbers (FIXED_LINE for phonenumbers, ordinary tariff, used by fax-to-mail services).
}

# Country calling codes without a country (phonenumbers' region "001"): refused even when
# allowed_countries is "*", since calls there cost many times a normal call.
INTERNATIONAL_NETWORKS: Final[dict[int, str]] = {
    800: "international freephone (+800 UIFN)",
    808: "international shared-cost number (+808)",
    870: "Inmarsat satellite number (+870)",
    878: "universal personal telecommunications number (+878)",
    881: "satellite phone number (+881 GMSS)",
    882: "international network number (+882)",
    883: "international network number (+883)",
    888: "UN OCHA humanitarian network number (+888)",
    979: "international premium-rate number (+979)",
}

# Number types phonenumbers reports, and why each refused one is refused.
_REFUSED_TYPES: Final[dict[int, str]] = {
    PhoneNumberType.PREMIUM_RATE: f"premium-rate number — {_TOLL_FRAUD}",
    PhoneNumberType.SHARED_COST: f"shared-cost number — {_TOLL_FRAUD}",
    PhoneNumberType.UAN: f"universal access number (UAN) — {_TOLL_FRAUD}",
    PhoneNumberType.PERSONAL_NUMBER: f"personal (follow-me) number — {_TOLL_FRAUD}",
    PhoneNumberType.VOICEMAIL: "voicemail access number — cannot receive a fax or SMS",
    PhoneNumberType.PAGER: "pager number — cannot receive a fax or SMS",
    PhoneNumberType.UNKNOWN: "number of unknown type",
}

_TYPE_NAMES: Final[dict[int, str]] = {
    PhoneNumberType.FIXED_LINE: "fixed-line",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.VOIP: "VoIP",
}

# What each purpose may dial; everything else is refused.  A fax to a mobile number is odd but
# legal (some mobiles take faxes); an SMS needs a mobile.
_ACCEPTED_TYPES: Final[dict[str, frozenset[int]]] = {
    "fax": frozenset(
        {
            PhoneNumberType.FIXED_LINE,
            PhoneNumberType.MOBILE,
            PhoneNumberType.FIXED_LINE_OR_MOBILE,
            PhoneNumberType.TOLL_FREE,
            PhoneNumberType.VOIP,
        }
    ),
    "sms": frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}),
}

# Separators people put into numbers and that change nothing: space, NBSP, figure, thin, hair and
# narrow no-break spaces, hyphen-minus, hyphen, non-breaking hyphen, en dash (word processors turn
# " - " into it), slash, dot and parentheses.
_SEPARATORS: Final = frozenset(" \u00a0\u2007\u2009\u200a\u202f-\u2010\u2011\u2013/.()")
# The exotic spaces and hyphens become plain ones first, so that phonenumbers' matcher (which
# looks for two numbers in one string) sees the same separators as the user meant.
_PLAIN_SEPARATORS: Final = str.maketrans(
    {"\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",
     "\u2010": "-", "\u2011": "-", "\u2013": "-"}
)

# "ext. 12", "x12", "Durchwahl 12", "DW 12", "App. 12": an extension written as such.
_EXTENSION_RE: Final = re.compile(
    r"(?<![a-z])(?:ext(?:ension)?|durchwahl|apparat|app|dw|x)(?![a-z])", re.IGNORECASE
)

# "(0)" right after the country code: the conventional way to show the trunk prefix that is
# dialled only nationally (+49 (0)40 123456).
_PAREN_TRUNK_RE: Final = re.compile(r"^(?:\+|00)[^\d(]*(?P<cc>\d{1,3})[^\d(]*(?P<trunk>\(\s*0\s*\))")

_MAX_INPUT_LENGTH: Final = 64


def is_known_region(code: str) -> bool:
    """True for an ISO 3166 region code phonenumbers knows (``DE``, ``AT``, ``GB`` …)."""
    return code in phonenumbers.SUPPORTED_REGIONS


@dataclass(frozen=True)
class NumberPolicy:
    """Which numbers may be dialled, and how national numbers are read.

    ``default_country``: the region national numbers (``040 123456``) belong to; ``None`` means
    every number must carry its country code.  ``allowed_countries``: regions that may be dialled;
    ``"*"`` allows every country (the refusals of premium and special numbers still apply).
    """

    default_country: str | None = "DE"
    allowed_countries: frozenset[str] = frozenset({"DE"})

    def __post_init__(self) -> None:
        # Accept any iterable (a list from YAML, a set) but store a frozenset.
        if not isinstance(self.allowed_countries, frozenset):
            object.__setattr__(self, "allowed_countries", frozenset(self.allowed_countries))
        if self.default_country is not None and not is_known_region(self.default_country):
            raise ValueError(f"unknown region code {self.default_country!r}")
        for code in self.allowed_countries:
            if code != ANY_COUNTRY and not is_known_region(code):
                raise ValueError(f"unknown region code {code!r}")

    @property
    def any_country(self) -> bool:
        return ANY_COUNTRY in self.allowed_countries

    def normalize(self, raw: str, *, purpose: str = "fax") -> str:
        """Return ``raw`` as E.164 (``+4940123456``), or raise NumberError saying why not.

        ``purpose`` is ``"fax"`` or ``"sms"`` (a ``JobType`` works too); SMS needs a mobile.
        """
        accepted = _accepted_types(purpose)
        parsed = self._parse(raw)
        reason = _refusal(parsed, accepted, purpose)
        if reason is None:
            reason = self._country_refusal(parsed)
        if reason is not None:
            # An invalid number could not be read; everything else _refusal says is policy.
            raise NumberError(raw, reason, refused=not reason.startswith(_INVALID))
        return _e164(parsed)

    def refusal(self, e164: str, *, purpose: str = "fax") -> str | None:
        """Why this E.164 number must not be dialled under this policy, or None if it may."""
        reason = refusal_reason(e164, purpose=purpose)
        if reason is None:
            reason = self._country_refusal(phonenumbers.parse(e164, None))
        return reason

    def _country_refusal(self, parsed: PhoneNumber) -> str | None:
        if self.any_country:
            return None
        region = phonenumbers.region_code_for_number(parsed)
        if region in self.allowed_countries:
            return None
        allowed = ", ".join(sorted(self.allowed_countries)) or "none"
        return (
            f"country {region} (+{parsed.country_code}) is not in numbers.allowed_countries"
            f" ({allowed})"
        )

    def _parse(self, raw: str) -> PhoneNumber:
        """Read ``raw`` into a PhoneNumber, rejecting every input that has more than one reading."""
        if not isinstance(raw, str):
            raise TypeError(f"expected a str, got {type(raw).__name__}")
        text = raw.strip()
        if not text:
            raise NumberError(raw, "empty: no number given")
        if len(text) > _MAX_INPUT_LENGTH:
            raise NumberError(raw, "too long to be one phone number")
        _check_characters(raw, text)
        text = text.translate(_PLAIN_SEPARATORS)
        region = self.default_country

        # More than one number in one string ("040 123456 / 040 654321").
        matches = list(
            phonenumbers.PhoneNumberMatcher(
                text, region or "ZZ", leniency=phonenumbers.Leniency.POSSIBLE
            )
        )
        if len(matches) > 1:
            found = " and ".join(repr(m.raw_string) for m in matches)
            raise NumberError(raw, f"more than one number ({found}) — give one number per recipient")

        # "+49 (0)40 …": drop the conventional trunk prefix shown in parentheses, but only where
        # that country's trunk prefix really is 0 (in Italy the 0 belongs to the number).
        paren = _PAREN_TRUNK_RE.match(text)
        if paren is not None:
            cc = int(paren.group("cc"))
            if _national_prefix(cc) != "0":
                raise NumberError(
                    raw,
                    f"ambiguous: '(0)' after +{cc}, but 0 is not the trunk prefix there —"
                    " write the number exactly as dialled from abroad",
                )
            text = text[: paren.start("trunk")] + " " + text[paren.end("trunk") :]
        elif re.search(r"\(\s*0\s*\)", text) and not re.match(r"^\(\s*0\s*\)", text):
            raise NumberError(
                raw, "ambiguous: '(0)' is understood only right after the country code (+49 (0)40 …)"
            )

        compact = "".join(ch for ch in text if ch not in _SEPARATORS)
        international = compact.startswith("+")
        digits = compact.lstrip("+")
        if not digits:
            raise NumberError(raw, "no digits")

        if not international:
            self._check_national(raw, digits)

        try:
            parsed = phonenumbers.parse(compact, region, keep_raw_input=True)
        except phonenumbers.NumberParseException as exc:
            raise NumberError(raw, f"not a valid number ({_parse_problem(exc)})") from None

        # Did phonenumbers drop digits after the country code?  Then a trunk prefix was written
        # where it must not be ("+49 040 …", "0049 040 …"): refuse rather than assume a typo.
        if parsed.country_code_source in (
            phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN,
            phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD,
        ):
            cc = str(parsed.country_code)
            nsn = phonenumbers.national_significant_number(parsed)
            head = digits[: len(digits) - len(nsn)] if digits.endswith(nsn) else ""
            if not head.endswith(cc):
                extra = head[head.rfind(cc) + len(cc) :] if cc in head else ""
                if extra and extra == _national_prefix(parsed.country_code):
                    raise NumberError(
                        raw,
                        f"ambiguous: trunk prefix {extra} written after the country code +{cc} —"
                        f" write +{cc} {nsn[:2]}… or +{cc} ({extra}){nsn[:2]}…",
                    )
                raise NumberError(raw, f"ambiguous: digits after +{cc} were not understood")
        return parsed

    def _check_national(self, raw: str, digits: str) -> None:
        """A number without '+': it needs a default country, and there its trunk prefix."""
        region = self.default_country
        if region is None:
            raise NumberError(
                raw,
                "ambiguous: no country code, and numbers.default_country is not set —"
                " write the number as +<country code> …",
            )
        if len(digits) <= 6:
            if phonenumbers.is_emergency_number(digits, region):
                raise NumberError(
                    raw, f"emergency number ({digits}) — never dialled by faxbridge", refused=True
                )
            if _is_short_number(digits, region):
                raise NumberError(
                    raw, f"short number ({digits}) — service codes cannot be dialled via FAX.de",
                    refused=True,
                )
        prefix = _national_prefix(phonenumbers.country_code_for_region(region))
        # Where the trunk prefix is 0 (DE, AT, CH, GB, FR …) a national number starts with it;
        # "40123456" could be a local number without area code or a number missing its +49.
        # Elsewhere (US, IT, ES …) national numbers are written without a trunk prefix.
        if prefix == "0" and not digits.startswith("0"):
            raise NumberError(
                raw,
                "ambiguous: no leading 0 or + — a local number without area code, or a number"
                " missing its country code? Write e.g. 040 123456 or +49 40 123456",
            )


def refusal_reason(e164: str, *, purpose: str = "fax") -> str | None:
    """Why this E.164 number must never be dialled, or None if it may (countries not checked).

    For edges and the simulator that already hold E.164; anything not in strict E.164 form
    (``+`` and digits only) is refused too.
    """
    accepted = _accepted_types(purpose)
    if not re.fullmatch(r"\+[1-9]\d{1,15}", e164):
        return "not in E.164 form (+ followed by digits)"
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as exc:
        return f"not a valid number ({_parse_problem(exc)})"
    return _refusal(parsed, accepted, purpose)


def _refusal(parsed: PhoneNumber, accepted: frozenset[int], purpose: str) -> str | None:
    """The policy-free part of the rule, in order of what matters most to say."""
    e164 = _e164(parsed)
    nsn = phonenumbers.national_significant_number(parsed)
    region = phonenumbers.region_code_for_country_code(parsed.country_code)

    network = INTERNATIONAL_NETWORKS.get(parsed.country_code)
    if network is not None or region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        what = network or f"international network number (+{parsed.country_code})"
        return f"{what} — refused regardless of numbers.allowed_countries ({_TOLL_FRAUD[8:]})"

    for prefix in sorted(REFUSED_PREFIXES, key=len, reverse=True):
        if e164.startswith(prefix):
            return REFUSED_PREFIXES[prefix]

    if len(nsn) <= 6 and region != phonenumbers.UNKNOWN_REGION:
        if phonenumbers.is_emergency_number(nsn, region):
            return f"emergency number ({nsn}) — never dialled by faxbridge"
        if _is_short_number(nsn, region):
            return f"short number ({nsn}) — service codes cannot be dialled via FAX.de"

    # E.164 §6.1: at most 15 digits including the country code (phonenumbers accepts longer
    # German numbers, which FAX.de could not dial).
    if len(str(parsed.country_code)) + len(nsn) > 15:
        return f"{_INVALID}: too long (E.164 allows 15 digits)"
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        return f"{_INVALID}: unknown country code +{parsed.country_code}"
    if possible == ValidationResult.TOO_SHORT:
        return f"{_INVALID}: too short"
    if possible == ValidationResult.TOO_LONG:
        return f"{_INVALID}: too long (two numbers run together?)"
    if possible != ValidationResult.IS_POSSIBLE:
        return f"{_INVALID}: wrong length for +{parsed.country_code}"
    if not phonenumbers.is_valid_number(parsed):
        return f"{_INVALID}: no such number range in +{parsed.country_code}"

    kind = phonenumbers.number_type(parsed)
    if kind in _REFUSED_TYPES:
        return _REFUSED_TYPES[kind]
    if kind not in accepted:
        if purpose == "sms":
            return f"SMS needs a mobile number; this is a {_TYPE_NAMES.get(kind, 'non-mobile')} number"
        return f"{_TYPE_NAMES.get(kind, 'this kind of')} number cannot be dialled for {purpose}"
    return None


def _check_characters(raw: str, text: str) -> None:
    """Allow digits, one leading '+', and harmless separators; explain everything else."""
    if _EXTENSION_RE.search(text):
        raise NumberError(
            raw,
            "extension marker ('ext', 'x', 'DW') — write the extension digits straight after the"
            " number (040 123456-78)",
        )
    if any(ch.isalpha() for ch in text):
        raise NumberError(
            raw, "contains letters — vanity numbers (0800-FLOWERS) are not translated; use digits"
        )
    if "*" in text or "#" in text:
        raise NumberError(raw, "contains '*' or '#' — service codes and tone dialling cannot be sent")
    for mark in ",;&|":
        if mark in text:
            raise NumberError(
                raw,
                f"contains {mark!r} — more than one number, or a dial pause? Give exactly one number",
            )
    if text.count("+") > 1:
        raise NumberError(raw, "more than one '+' — more than one number? Give exactly one number")
    if "+" in text and not text.startswith("+"):
        raise NumberError(raw, "'+' is allowed only at the start of the number")
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if depth not in (0, 1):
            raise NumberError(raw, "unbalanced parentheses")
        if not (ch.isascii() and ch.isdigit()) and ch != "+" and ch not in _SEPARATORS:
            raise NumberError(raw, f"unexpected character {ch!r} (U+{ord(ch):04X})")
    if depth != 0:
        raise NumberError(raw, "unbalanced parentheses")


def _accepted_types(purpose: str) -> frozenset[int]:
    try:
        return _ACCEPTED_TYPES[str(purpose)]
    except KeyError:
        raise ValueError(f"purpose must be 'fax' or 'sms', not {purpose!r}") from None


def _national_prefix(country_code: int) -> str | None:
    """The trunk prefix of a country's main region ("0" for DE, None for IT, "1" for US)."""
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata.national_prefix if metadata is not None else None


def _parse_problem(exc: phonenumbers.NumberParseException) -> str:
    problems = {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }
    return problems.get(exc.error_type, str(exc))


def _e164(parsed: PhoneNumber) -> str:
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _is_short_number(digits: str, region: str) -> bool:
    """A service code of ``region`` (115, 116117, 11833 …) per phonenumbers' short-number data."""
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(shortnumberinfo.is_valid_short_number_for_region(number, region))
