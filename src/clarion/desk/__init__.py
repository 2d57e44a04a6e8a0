"""The operator's desk, without its web pages: accounts and sessions (`accounts`), the audit
log (`audit`), and notices written by people from draft to sent, with two-person approval and
scheduled sending (`drafts`). The pages are in `clarion.web.desk`."""
