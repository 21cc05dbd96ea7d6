"""Chainkeeper api stage."""
