"""The SMTP edge: mail to ``<number>@<fax domain>`` becomes SendJobs, and the sender gets a report.

Modules: server (the aiosmtpd server on the daemon's loop, spool, the work after 250), handler (who may
send what, as SMTP replies), data (reading DATA), auth (SMTP AUTH), mail (a mail → the jobs it asks
for), text (plain-text helpers), report (report mails).
"""
