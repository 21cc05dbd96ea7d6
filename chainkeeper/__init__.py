"""Chainkeeper: the whole chain of a language-model application, with an owner for every link."""

__version__ = "0.1.0"

