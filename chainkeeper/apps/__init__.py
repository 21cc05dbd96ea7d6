"""Chainkeeper apps stage."""
