"""The ``wxtransfer`` command line (needs the ``cli`` extra: click and rich).

- :mod:`.commands`: the commands (upload, download, serve, demo) and :func:`main`
- :mod:`.download`: many downloads at once, each to its file or stdout
- :mod:`.options`: option parsing (sizes, headers, forms, ``--resolve``, curl's options)
- :mod:`.output`: bars, the summary table, ``-w`` and ``-v``
- :mod:`.names`: safe local names for downloads
- :mod:`.exit`: :class:`ExitStatus`, stop signals, failure reports
"""

from __future__ import annotations

from .commands import cli, main
from .exit import ExitStatus

__all__ = ["ExitStatus", "cli", "main"]
