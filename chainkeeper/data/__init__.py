"""Chainkeeper data stage."""
