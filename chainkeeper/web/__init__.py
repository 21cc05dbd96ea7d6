"""Chainkeeper web stage."""
