"""`python -m securestore.cli` runs the command line, like `python -m securestore`."""

from . import main

raise SystemExit(main())
