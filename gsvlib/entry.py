"""The ``gsv`` command's entry point: :func:`gsvlib.cli.main`, with a Ctrl-C during its start-up (importing torch
takes a second or two) ending in one line instead of a traceback."""
import sys

try:
    from gsvlib.cli import main as _main
except KeyboardInterrupt:
    _main = None


def main() -> int:
    if _main is None:
        print("gsv: interrupted while starting; nothing was done", file=sys.stderr)
        return 130
    return _main()
