"""The web side: public page, feeds (and, later, the API and the operator's desk)."""
