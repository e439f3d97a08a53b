"""``python -m genreflow`` runs the CLI."""

from genreflow.cli import main

main(prog_name="genreflow")
