"""``python -m pipelines``: the command-line face of the pipelines."""

from pipelines.faces.cli import run

if __name__ == "__main__":  # not when a child process (the isolated file reader) imports this module
    run()
