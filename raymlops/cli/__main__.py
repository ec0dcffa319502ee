import sys

from raymlops.cli import main

sys.exit(main())
