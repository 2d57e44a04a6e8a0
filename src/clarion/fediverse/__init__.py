"""Clarion as a native ActivityPub account (issue 8): HTTP Signatures (`signatures`), the
actor's keys and followers (`accounts`), and the documents it serves (`documents`)."""
