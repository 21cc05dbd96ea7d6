"""Chainkeeper cli stage."""
