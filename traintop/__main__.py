"""`python -m traintop`: the same as the `traintop` command."""

from traintop.commands.cli import main

raise SystemExit(main())
