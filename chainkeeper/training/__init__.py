"""Chainkeeper training stage."""
