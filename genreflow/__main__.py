"""``python -m genreflow`` runs the CLI."""

from genreflow.cli import console_main

console_main()
