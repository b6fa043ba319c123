"""faxbridge: a daemon bridging office folders and mail to the FAX.de XML web service."""

__version__ = "0.1.0"
