"""``python -m wxtransfer``: the command line (see ``wxtransfer --help``)."""

from ._cli import main

if __name__ == "__main__":
    main()
