"""The customer-service app: a bank intent classifier, with a built-in EN/ZH sample dataset."""
