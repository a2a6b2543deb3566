"""``python -m dpcnn`` is the same as the ``dpcnn`` console script."""

from dpcnn.cli import main

raise SystemExit(main())
