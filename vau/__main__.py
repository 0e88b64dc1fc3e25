import sys

from vau.cli import main

sys.exit(main())
