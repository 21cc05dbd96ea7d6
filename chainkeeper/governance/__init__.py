"""Chainkeeper governance stage."""
