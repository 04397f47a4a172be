import sys

from aqueue._ops.cli import main

sys.exit(main())
