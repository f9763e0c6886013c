"""``python -m pushmanifest.cli``: the command, as ``python -m pushmanifest``."""

from .runner import main

raise SystemExit(main())
