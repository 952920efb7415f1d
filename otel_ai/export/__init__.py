"""Providers, exporters, the embedded-default files, and reading them back."""
