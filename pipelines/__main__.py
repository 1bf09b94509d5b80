"""``python -m pipelines``: the command-line face of the pipelines."""

from pipelines.cli import main

raise SystemExit(main())
