"""``python -m pipelines``: the command-line face of the pipelines."""

from pipelines.cli import run

run()
