"""``python -m wxtransfer`` and the ``wxtransfer`` command (see ``wxtransfer --help``).

The library needs neither click nor rich; the command line does, and comes with the
``cli`` extra. Without it the command says which extra to install, on one line of stderr,
and exits with 1 (as for any failure that is not a usage error), without a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["main", "missing_extra"]

# The modules an extra brings, by the top-level name an ImportError reports.
_EXTRAS = {"click": "cli", "rich": "cli", "aiohttp": "server"}
EXIT_MISSING_EXTRA = 1


def missing_extra(exc: ImportError) -> str | None:
    """The extra that would provide the module ``exc`` is missing, if it is one of ours."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    return _EXTRAS.get(exc.name.partition(".")[0])


def main() -> None:
    """Console-script entry point: the command line, or which extra it needs."""
    try:
        # The extra's own modules first: the command line's may be loaded already.
        import click  # noqa: F401
        import rich  # noqa: F401

        from .cli import main as cli_main
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc)
        if extra is None:
            raise
        print(
            f"wxtransfer: the command line needs {exc.name}, which comes with the "
            f"{extra} extra: pip install 'wxtransfer[{extra}]'",
            file=sys.stderr,
        )
        sys.exit(EXIT_MISSING_EXTRA)
    cli_main()


if __name__ == "__main__":
    main()
