import sys

from gsvlib.cli import main

sys.exit(main())
