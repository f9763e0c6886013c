"""The ``pushmanifest`` command: argument parsing and output only (the library does the work).

``parsers``: the usage, one parser per command, option validators. ``runner``: :func:`main` and
:func:`console_main` (the console script), logging to stderr, errors as exit statuses.
``signals``: SIGTERM as Ctrl-C, runs cancelled cleanly. ``commands``: one function per command,
from arguments to the library's options, and the output.
"""

from __future__ import annotations

from .parsers import _PARSERS as _PARSERS
from .parsers import COMMANDS, USAGE
from .parsers import _Number as _Number
from .parsers import _split_command as _split_command
from .runner import _skip_unused_imports as _skip_unused_imports
from .runner import console_main, main

# The private names above are the seams the tests use (option sweeps, the command word).
__all__ = ["COMMANDS", "USAGE", "console_main", "main"]
