"""``python -m genreflow`` runs the CLI."""

from .cli import main

main(prog_name="genreflow")
