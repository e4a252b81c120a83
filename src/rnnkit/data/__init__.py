"""Data: datasets, the user's files, vocabularies and batching."""
