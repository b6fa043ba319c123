"""Every result code of the five FAX.de operations: name, the spec's sentence, and what it means for us.

Source: ../shared/FAXDE-API.md, the "Results …" table of each operation. tests/test_faxde_codes.py
checks this table against that file, so a code added or reworded there shows up as a failing test.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    OK = "ok"
    PENDING = "pending"  # JobStatus 6, RequestReceived 5: not an error, nothing (yet)
    RETRYABLE = "retryable"  # a later attempt may succeed
    PERMANENT = "permanent"  # this request will never succeed as it is
    ACCOUNT = "account"  # credentials or account state: every call will fail until an admin acts


@dataclass(frozen=True)
class ResultCode:
    operation: str
    code: int
    name: str
    sentence: str  # the spec's own words
    outcome: Outcome
    action: str = ""  # what the user should do, for .error.txt files and bounce mails

    @property
    def retryable(self) -> bool:
        return self.outcome is Outcome.RETRYABLE


_R, _P, _A, _OK, _W = (
    Outcome.RETRYABLE,
    Outcome.PERMANENT,
    Outcome.ACCOUNT,
    Outcome.OK,
    Outcome.PENDING,
)

_CHECK_ACCOUNT = "Check faxde.account and the password in the faxbridge configuration, or the account's state with FAX.de support."
_CHECK_DOCUMENT = "Check that the document opens and is of the type its file name says (PDF, TIF, DOC, XLS, HTML, BMP)."
_CHECK_NUMBER = "Check the recipient number; premium-rate and blocked numbers are refused."
_CONTACT = "Contact FAX.de support to have this enabled for the account."
_LATER = "faxbridge retries automatically; no action needed unless it persists."

_TABLE: dict[str, list[tuple[int, str, str, Outcome, str]]] = {
    "SendJob": [
        (0, "ACCEPTED", "Job accepted and scheduled", _OK, ""),
        (-1, "WRONG_PASSWORD", "Invalid/wrong password", _A, _CHECK_ACCOUNT),
        (-2, "UNKNOWN_CUSTOMER", "Unknown customer id", _A, _CHECK_ACCOUNT),
        (-3, "DOCUMENT_MISSING", "Document does not exist", _P, _CHECK_DOCUMENT),
        (-4, "SERVER_ERROR", "Server error", _R, _LATER),
        (-5, "RECIPIENT_BLOCKED", "Recipient number blocked", _P, _CHECK_NUMBER),
        (-6, "UNSUPPORTED_TYPE", "Unsupported document type", _P, _CHECK_DOCUMENT),
        (-7, "CONVERSION_ERROR", "Error converting document", _P, _CHECK_DOCUMENT),
        (-8, "NOT_AUTHORIZED_DESTINATION", "Not authorized for foreign destinations or this job type", _P, _CONTACT),
        (-14, "CONVERSION_ERROR", "Error converting document", _P, _CHECK_DOCUMENT),
        (-65, "RECIPIENT_FILE_ERROR", "Internal error handling the recipients file", _R, _LATER),
        (-66, "DOCUMENT_ERROR", "Internal error handling the document", _R, _LATER),
        (-77, "DUPLICATE", "Identical job already established (duplicate?)", _P,
         "FAX.de already has an identical job; it was not sent again. Check the FAX.de job list before re-sending."),
        (-1309, "EVALUATION_PAGE_LIMIT", "Document with more than 3 pages while in evaluation period ( before any payment )", _P,
         "Send documents of at most 3 pages, or make a first payment to end the evaluation period."),
        (1, "NOT_AUTHORIZED", "Not authorized", _A, _CHECK_ACCOUNT),
        (2, "BLANK_CUSTOMER", "Blank customer id", _A, _CHECK_ACCOUNT),
        (3, "EVALUATION_EXPIRED", "Evaluation period expired", _A, _CONTACT),
        (4, "INVALID_JOB_TYPE", "Invalid job type", _P, "Use one of the job types fax, sms, email, iletter, iletter-color, qsign."),
        (6, "CREDIT_NOT_AVAILABLE", "Credit not yet available ( first debit + 14 days )", _A, "Wait until the credit is available (first debit + 14 days)."),
        (7, "INSUFFICIENT_CREDIT", "Insufficient credit (only iLetter, JobType=3,4)", _P, "Top up the FAX.de credit, then send again."),
        (8, "NO_VALID_RECIPIENT", "No valid recipient", _P, _CHECK_NUMBER),
        (9, "RECIPIENT_BLACKLISTED", "Recipient is blacklisted", _P, "The recipient asked not to receive faxes; do not send again."),
        (10, "QSIGN_ERROR", "Internal error on QSign", _R, _LATER),
        (11, "QSIGN_MULTI_RECIPIENT", "QSign: iLetter with multiple recipient not allowed", _P, "Send QSign letters to one recipient per job."),
        (15, "SENDFILE_MISSING", "SendFile does not exist", _P, _CHECK_DOCUMENT),
        (45, "PREMIUM_NUMBER", "Recipient number not allowed (premium number)", _P, _CHECK_NUMBER),
        (46, "PREMIUM_NUMBER", "Recipient number not allowed (premium number)", _P, _CHECK_NUMBER),
        (47, "PREMIUM_NUMBER", "Recipient number not allowed (premium number)", _P, _CHECK_NUMBER),
        (54, "NO_INCOMING_PAYMENT", "No incoming payment (J5)", _A, "Pay the outstanding FAX.de invoice."),
        (58, "CONVERSION_ERROR", "Error converting document", _P, _CHECK_DOCUMENT),
        (61, "INSUFFICIENT_QUANTITY", "Insufficient excepted quantity (prepaid packages)", _A, "Buy a further prepaid package."),
        (75, "NO_CONTENT", "No given SendText nor SendFiles", _P, "Give a text or at least one document."),
    ],
    "JobStatus": [
        (0, "FINISHED", "JobId found, the job has finished and the further result values are filled", _OK, ""),
        (1, "UNKNOWN_CUSTOMER", "Unknown customer id", _A, _CHECK_ACCOUNT),
        (2, "WRONG_PASSWORD", "Invalid/wrong password", _A, _CHECK_ACCOUNT),
        (3, "EVALUATION_EXPIRED", "Evaluation period expired", _A, _CONTACT),
        (4, "ACCOUNT_LOCKED", "Account locked", _A, _CONTACT),
        (5, "JOB_NOT_FOUND", "Job id not found", _P, "The job is unknown to FAX.de; check the FAX.de job list."),
        (6, "IN_PROGRESS", "Job is still in progress", _W, ""),
    ],
    "CancelJob": [
        (0, "CANCELLED", "Job canceled successfully", _OK, ""),
        (1, "ALREADY_FINISHED", "The job was already finished and could not be canceled anymore", _P, "The job has already been sent."),
        (-1, "WRONG_CREDENTIALS", "Unknown customer id or password mismatch", _A, _CHECK_ACCOUNT),
        (-2, "JOB_NOT_FOUND", "Unknown job id", _P, "The job is unknown to FAX.de."),
        (-3, "ACCOUNT_LOCKED", "Account locked", _A, _CONTACT),
    ],
    "RequestReceived": [
        (0, "FAX_RETURNED", "A new received fax was found and is returned in FaxImage", _OK, ""),
        (1, "UNKNOWN_CUSTOMER", "Unknown customer id", _A, _CHECK_ACCOUNT),
        (2, "WRONG_PASSWORD", "Invalid/wrong password", _A, _CHECK_ACCOUNT),
        (3, "EVALUATION_EXPIRED", "Evaluation period expired", _A, _CONTACT),
        (4, "ACCOUNT_LOCKED", "Account locked", _A, _CONTACT),
        (5, "INBOX_EMPTY", "No new faxes found in inbox", _W, ""),
    ],
    "DeleteReceived": [
        (0, "DELETED", "Fax was deleted from your inbox", _OK, ""),
        (1, "UNKNOWN_CUSTOMER", "Unknown customer id", _A, _CHECK_ACCOUNT),
        (2, "WRONG_PASSWORD", "Invalid/wrong password", _A, _CHECK_ACCOUNT),
        (3, "EVALUATION_EXPIRED", "Evaluation period expired", _A, _CONTACT),
        (4, "ACCOUNT_LOCKED", "Account locked", _A, _CONTACT),
        (5, "UNKNOWN_FAX", "Unknown fax id", _P, "The fax is no longer on the server (already deleted)."),
    ],
}

RESULT_CODES: dict[str, dict[int, ResultCode]] = {
    operation: {code: ResultCode(operation, code, name, sentence, outcome, action)
                for code, name, sentence, outcome, action in rows}
    for operation, rows in _TABLE.items()
}

OPERATIONS = tuple(RESULT_CODES)


def lookup(operation: str, code: int) -> ResultCode:
    """The table entry; a code the spec does not list is treated as a permanent error, never as success."""
    try:
        return RESULT_CODES[operation][code]
    except KeyError:
        return ResultCode(
            operation, code, "UNDOCUMENTED", f"Undocumented result code {code}", Outcome.PERMANENT,
            "Report this code to FAX.de support; faxbridge does not know what it means.",
        )


def by_name(operation: str, name: str) -> ResultCode:
    """The first entry of that name (handy for the simulator and tests)."""
    for entry in RESULT_CODES[operation].values():
        if entry.name == name:
            return entry
    raise KeyError(f"{operation} has no result named {name}")
