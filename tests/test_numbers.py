"""Number normalisation and refusal: what users write → E.164, or a reason a human understands."""

from __future__ import annotations

import phonenumbers
import pytest

from faxbridge.errors import NumberError
from faxbridge.model import JobType
from faxbridge.numbers import (
    INTERNATIONAL_NETWORKS,
    REFUSED_PREFIXES,
    NumberPolicy,
    is_known_region,
    refusal_reason,
)

DE = NumberPolicy()
ANYWHERE = NumberPolicy(allowed_countries=frozenset({"*"}))
NO_DEFAULT = NumberPolicy(default_country=None, allowed_countries=frozenset({"*"}))
US = NumberPolicy(default_country="US", allowed_countries=frozenset({"US"}))
DACH = NumberPolicy(allowed_countries=frozenset({"DE", "AT", "CH"}))


ACCEPTED = [
    # (policy, raw, purpose, expected E.164)
    (DE, "+49 40 123456", "fax", "+4940123456"),
    (DE, "0049 40 123456", "fax", "+4940123456"),
    (DE, "040/123456", "fax", "+4940123456"),
    (DE, "+49 (0)40 123456", "fax", "+4940123456"),
    (DE, "+49 (0) 40 123456", "fax", "+4940123456"),
    (DE, "+49(0)40123456", "fax", "+4940123456"),
    (DE, "0049 (0)40 123456", "fax", "+4940123456"),
    (DE, "040-123456", "fax", "+4940123456"),
    (DE, "+49-40-123456", "fax", "+4940123456"),
    (DE, "(040) 123 456", "fax", "+4940123456"),
    (DE, "(0)40 123456", "fax", "+4940123456"),
    (DE, "+49 (40) 123456", "fax", "+4940123456"),
    (DE, "040 / 12 34 56", "fax", "+4940123456"),
    (DE, "040.123456", "fax", "+4940123456"),
    (DE, "  040 123456  ", "fax", "+4940123456"),
    (DE, "+4940123456", "fax", "+4940123456"),
    (DE, "+49\u00a040\u00a0123456", "fax", "+4940123456"),  # NBSP
    (DE, "+49\u202f40\u2009123456", "fax", "+4940123456"),  # narrow NBSP, thin space
    (DE, "+49\u201140\u2011123456", "fax", "+4940123456"),  # non-breaking hyphen
    (DE, "040 \u2013 123456", "fax", "+4940123456"),  # en dash from a word processor
    (DE, "030 12345-0", "fax", "+4930123450"),  # DIN 5008: switchboard extension 0
    (DE, "+49 (0) 40 / 123 456-78", "fax", "+494012345678"),  # DIN 5008 extension
    (DE, "089 1234567", "fax", "+49891234567"),
    (DE, "0171 1234567", "fax", "+491711234567"),  # fax to a mobile: odd, allowed
    (DE, "0800 1234567", "fax", "+498001234567"),  # toll-free: fine for fax
    (DE, "032 123456789", "fax", "+4932123456789"),  # national subscriber number
    (DE, "0171 1234567", "sms", "+491711234567"),
    (DE, "+49 151 12345678", "sms", "+4915112345678"),
    (DE, "0176/12345678", JobType.SMS, "+4917612345678"),
    (DE, "040 123456", JobType.FAX, "+4940123456"),
    (ANYWHERE, "+44 20 7123 4567", "fax", "+442071234567"),
    (ANYWHERE, "+39 06 1234 5678", "fax", "+390612345678"),  # Italian leading 0 is part of it
    (ANYWHERE, "+1 212 555 1234", "fax", "+12125551234"),
    (DACH, "+43 1 9001", "fax", "+4319001"),
    (DACH, "+41 44 123 45 67", "fax", "+41441234567"),
    (DACH, "+43 676 1234567", "sms", "+436761234567"),
    (DACH, "0041 44 123 45 67", "fax", "+41441234567"),
    (NO_DEFAULT, "+49 40 123456", "fax", "+4940123456"),
    (US, "212 555 1234", "fax", "+12125551234"),  # no trunk prefix 0 in the US
    (US, "1 212 555 1234", "fax", "+12125551234"),
    (US, "(212) 555-1234", "sms", "+12125551234"),  # FIXED_LINE_OR_MOBILE may take SMS
]


@pytest.mark.parametrize(("policy", "raw", "purpose", "expected"), ACCEPTED)
def test_accepted(policy: NumberPolicy, raw: str, purpose: str, expected: str) -> None:
    assert policy.normalize(raw, purpose=purpose) == expected
    # What comes out goes in again unchanged, and the E.164 check agrees.
    assert policy.normalize(expected, purpose=purpose) == expected
    assert refusal_reason(expected, purpose=purpose) is None
    assert policy.refusal(expected, purpose=purpose) is None


REFUSED = [
    # (policy, raw, purpose, fragment of the reason)
    # -- cannot be read unambiguously
    (DE, "", "fax", "empty"),
    (DE, "   ", "fax", "empty"),
    (DE, "40123456", "fax", "ambiguous: no leading 0 or +"),
    (DE, "123456", "fax", "ambiguous: no leading 0 or +"),
    (DE, "4940123456", "fax", "ambiguous: no leading 0 or +"),
    (NO_DEFAULT, "040 123456", "fax", "numbers.default_country is not set"),
    (NO_DEFAULT, "0049 40 123456", "fax", "numbers.default_country is not set"),
    (DE, "+49 040 123456", "fax", "trunk prefix 0 written after the country code +49"),
    (DE, "+49 0 40 123456", "fax", "trunk prefix 0 written after the country code +49"),
    (DE, "0049 040 123456", "fax", "trunk prefix 0 written after the country code +49"),
    (DE, "040 (0) 123456", "fax", "'(0)' is understood only right after the country code"),
    (ANYWHERE, "+39 (0)6 1234 5678", "fax", "0 is not the trunk prefix there"),
    (DE, "0800-FLOWERS", "fax", "vanity numbers"),
    (DE, "tel:+4940123456", "fax", "letters"),
    (DE, "O40 123456", "fax", "letters"),  # a letter O for a zero
    (DE, "040 123456 ext 12", "fax", "extension marker"),
    (DE, "040 123456 ext.12", "fax", "extension marker"),
    (DE, "040 123456 x12", "fax", "extension marker"),
    (DE, "040 123456 x 12", "fax", "extension marker"),
    (DE, "040 123456 DW 12", "fax", "extension marker"),
    (DE, "040 123456 Durchwahl 12", "fax", "extension marker"),
    (DE, "040 123456;ext=12", "fax", "extension marker"),
    (DE, "040 123456#12", "fax", "'*' or '#'"),
    (DE, "*31#040123456", "fax", "'*' or '#'"),
    (DE, "040 123456, 040 654321", "fax", "contains ','"),
    (DE, "040 123456; 040 654321", "fax", "contains ';'"),
    (DE, "040 123456 & 040 654321", "fax", "contains '&'"),
    (DE, "040 123456 / 040 654321", "fax", "more than one number"),
    (DE, "+49 40 123456 +49 40 654321", "fax", "more than one '+'"),
    (DE, "040 +123456", "fax", "'+' is allowed only at the start"),
    (DE, "040\t123456", "fax", "unexpected character '\\t'"),
    (DE, "040_123456", "fax", "unexpected character '_'"),
    (DE, "040 12345\uff16", "fax", "unexpected character"),  # fullwidth digit
    (DE, "(040 123456", "fax", "unbalanced parentheses"),
    (DE, "040) 123456", "fax", "unbalanced parentheses"),
    (DE, "((040)) 123456", "fax", "unbalanced parentheses"),
    (DE, "+", "fax", "no digits"),
    (DE, "0" * 70, "fax", "too long to be one phone number"),
    # -- not a number at all, or not an allocated one
    (DE, "+49 40 12", "fax", "not a valid number"),
    (DE, "0800 123456", "fax", "not a valid number"),  # 0800 has 7 digits after it
    (DE, "+49 15 1234", "fax", "not a valid number"),
    (DE, "+49 40 1234567890123", "fax", "too long (E.164 allows 15 digits)"),
    (DE, "+491511234567890123", "fax", "too long"),
    (DE, "+49 151 1234567890123", "fax", "more than one number"),
    (ANYWHERE, "+999 1234567", "fax", "not a valid number"),
    (ANYWHERE, "+44 76 1234 5678", "fax", "not a valid number"),  # possible but not valid
    (ANYWHERE, "+43 40 123456", "fax", "not a valid number"),
    (ANYWHERE, "+4", "fax", "not a valid number"),
    # -- premium, special and German deny-listed ranges
    (DE, "0900 1 234567", "fax", "premium-rate number (0900) — refused to protect against toll fraud"),
    (DE, "+49 900 5 123456", "fax", "premium-rate number (0900)"),
    (DE, "+49900123456", "fax", "premium-rate number (0900)"),  # short form still premium
    (DE, "0900 1 234567", "sms", "premium-rate number (0900)"),
    (DE, "0137 1234567", "fax", "televoting number (0137)"),
    (DE, "0138 12345", "fax", "mass-call number (0138)"),
    (DE, "0180 5 123456", "fax", "service number (0180)"),
    (DE, "0180 1 234567", "fax", "service number (0180)"),
    (DE, "0181 123456", "fax", "international VPN number (0181)"),
    (DE, "0190 123456", "fax", "(019x)"),
    (DE, "0193 12345", "fax", "(019x)"),
    (DE, "0199 1234567", "fax", "(019x)"),
    (DE, "0700 12345678", "fax", "personal number (0700)"),
    (DE, "01212 12345", "fax", "innovative-services number (012)"),
    (DE, "01010 40 123456", "fax", "carrier selection prefix"),
    (DE, "010 10 040 123456", "fax", "carrier selection prefix"),
    (DE, "0310 1234", "fax", "network test number (031)"),
    (DE, "0311 12345", "fax", "network test number (031)"),
    (DE, "0164 123456", "fax", "paging number (0164)"),
    (DE, "0168 12345", "sms", "paging number (0168)"),
    (DE, "0169 123456", "fax", "paging number (0169)"),
    (DE, "+49 11833", "fax", "directory enquiries (118xx)"),
    (DE, "+49 118 80", "fax", "directory enquiries (118xx)"),
    (DE, "+49 116 116", "fax", "harmonised service number (116xxx)"),
    (DE, "+49 115", "fax", "service number (115)"),
    (DE, "+49 112", "fax", "emergency number (112)"),
    (DE, "+49 110", "fax", "emergency number (110)"),
    # -- emergency and short numbers written nationally
    (DE, "112", "fax", "emergency number (112)"),
    (DE, "110", "fax", "emergency number (110)"),
    (DE, "115", "fax", "short number (115)"),
    (DE, "116116", "fax", "short number (116116)"),
    (DE, "116117", "sms", "short number (116117)"),
    (DE, "11833", "fax", "short number (11833)"),
    (ANYWHERE, "+44 999", "fax", "emergency number (999)"),
    (ANYWHERE, "+43 112", "fax", "emergency number (112)"),
    # -- premium and special types phonenumbers knows in other countries
    (ANYWHERE, "+1 900 555 1234", "fax", "premium-rate number — refused to protect against toll fraud"),
    (ANYWHERE, "+44 909 876 5432", "fax", "premium-rate number"),
    (ANYWHERE, "+44 70 1234 5678", "fax", "personal (follow-me) number"),
    (ANYWHERE, "+44 845 123 4567", "fax", "premium-rate number"),
    (ANYWHERE, "+43 810 123456", "fax", "shared-cost number"),
    (DACH, "+41 840 123 456", "fax", "shared-cost number"),
    (ANYWHERE, "+44 300 123 4567", "fax", "universal access number (UAN)"),
    # -- satellite and international networks: refused whatever allowed_countries says
    (ANYWHERE, "+881 6 123456789", "fax", "satellite phone number (+881 GMSS)"),
    (ANYWHERE, "+870 773 123456", "fax", "Inmarsat satellite number (+870)"),
    (ANYWHERE, "+882 1234 5678", "fax", "international network number (+882)"),
    (ANYWHERE, "+883 5012 345678", "fax", "international network number (+883)"),
    (ANYWHERE, "+979 1234 56789", "fax", "international premium-rate number (+979)"),
    (ANYWHERE, "+808 1234 5678", "fax", "international shared-cost number (+808)"),
    (ANYWHERE, "+800 1234 5678", "fax", "refused regardless of numbers.allowed_countries"),
    (DE, "00881 6 123456789", "fax", "satellite phone number"),
    # -- countries outside allowed_countries
    (DE, "+44 20 7123 4567", "fax", "country GB (+44) is not in numbers.allowed_countries (DE)"),
    (DE, "0044 20 7123 4567", "fax", "country GB (+44) is not in numbers.allowed_countries"),
    (DE, "+43 1 9001", "fax", "country AT (+43) is not in numbers.allowed_countries"),
    (DACH, "+33 1 23 45 67 89", "fax", "country FR (+33) is not in numbers.allowed_countries (AT, CH, DE)"),
    (US, "+1 416 555 0123", "fax", "country CA (+1)"),
    # -- SMS needs a mobile
    (DE, "040 123456", "sms", "SMS needs a mobile number; this is a fixed-line number"),
    (DE, "0800 1234567", "sms", "SMS needs a mobile number; this is a toll-free number"),
    (ANYWHERE, "+44 56 1234 5678", "sms", "SMS needs a mobile number; this is a VoIP number"),
]


@pytest.mark.parametrize(("policy", "raw", "purpose", "fragment"), REFUSED)
def test_refused(policy: NumberPolicy, raw: str, purpose: str, fragment: str) -> None:
    with pytest.raises(NumberError) as info:
        policy.normalize(raw, purpose=purpose)
    assert fragment in info.value.reason
    assert info.value.raw == raw
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("e164", "purpose", "fragment"),
    [
        ("+4940123456", "fax", None),
        ("+442071234567", "fax", None),  # countries are the policy's business, not this rule's
        ("+4917612345678", "sms", None),
        ("+4940123456", "sms", "SMS needs a mobile number"),
        ("+499001234567", "fax", "premium-rate number (0900)"),
        ("+4911833", "fax", "directory enquiries"),
        ("+8816123456789", "fax", "satellite"),
        ("+49112", "fax", "emergency number"),
        ("+4940", "fax", "not a valid number"),
        ("4940123456", "fax", "not in E.164 form"),
        ("+49 40 123456", "fax", "not in E.164 form"),
        ("+04940123456", "fax", "not in E.164 form"),
        ("", "fax", "not in E.164 form"),
    ],
)
def test_refusal_reason(e164: str, purpose: str, fragment: str | None) -> None:
    reason = refusal_reason(e164, purpose=purpose)
    if fragment is None:
        assert reason is None
    else:
        assert reason is not None and fragment in reason


def test_policy_refusal_adds_the_country_rule() -> None:
    assert DE.refusal("+442071234567") is not None
    assert "allowed_countries" in (DE.refusal("+442071234567") or "")
    assert ANYWHERE.refusal("+442071234567") is None
    assert "0900" in (DE.refusal("+499001234567") or "")


@pytest.mark.parametrize("purpose", ["email", "iletter", JobType.QSIGN, "FAX"])
def test_unknown_purpose_is_a_programming_error(purpose: str) -> None:
    with pytest.raises(ValueError, match="purpose"):
        DE.normalize("040 123456", purpose=purpose)
    with pytest.raises(ValueError, match="purpose"):
        refusal_reason("+4940123456", purpose=purpose)


def test_non_string_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        DE.normalize(4940123456)  # type: ignore[arg-type]


def test_policy_validates_its_regions() -> None:
    with pytest.raises(ValueError, match="XX"):
        NumberPolicy(default_country="XX")
    with pytest.raises(ValueError, match="de"):
        NumberPolicy(allowed_countries=frozenset({"de"}))
    policy = NumberPolicy(allowed_countries=["DE", "AT"])  # type: ignore[arg-type]
    assert policy.allowed_countries == frozenset({"DE", "AT"})
    hash(policy)  # frozen and hashable
    assert NumberPolicy().default_country == "DE"
    assert NumberPolicy().allowed_countries == frozenset({"DE"})
    assert is_known_region("DE") and not is_known_region("ZZ") and not is_known_region("001")


@pytest.mark.parametrize("prefix", sorted(REFUSED_PREFIXES))
def test_refused_prefix_table_is_german_and_explained(prefix: str) -> None:
    """Each entry is an E.164 prefix under +49 with a reason naming the national range."""
    assert prefix.startswith("+49") and prefix[1:].isdigit()
    reason = REFUSED_PREFIXES[prefix]
    assert f"(0{prefix[3:]}" in reason or f"({prefix[3:]}" in reason
    # Every number in the range is refused, whatever comes after the prefix.
    assert refusal_reason(prefix + "1234567") == reason


def test_international_network_table_covers_phonenumbers_non_geo_codes() -> None:
    assert set(INTERNATIONAL_NETWORKS) >= set(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)
    for code in INTERNATIONAL_NETWORKS:
        assert phonenumbers.region_code_for_country_code(code) == "001"


def test_number_error_keeps_the_raw_input() -> None:
    with pytest.raises(NumberError) as info:
        DE.normalize("0900 1 234567")
    assert info.value.raw == "0900 1 234567"
    assert str(info.value).startswith("'0900 1 234567': premium-rate number")


@pytest.mark.parametrize(
    "raw, refused",
    [("0900 1234567", True), ("+44 20 7946 0000", True), ("112", True), ("40123456", False),
     ("040 12345 abc", False), ("+49 40 1234567, 030 123456", False)],
)
def test_number_errors_say_whether_policy_refused_or_the_number_was_unreadable(raw: str, refused: bool) -> None:
    with pytest.raises(NumberError) as err:
        NumberPolicy().normalize(raw)
    assert err.value.refused is refused
