"""Chainkeeper annotation stage."""
