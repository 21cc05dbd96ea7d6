"""Chainkeeper core stage."""
