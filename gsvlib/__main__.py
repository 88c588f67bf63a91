import sys

from gsvlib.entry import main

sys.exit(main())
