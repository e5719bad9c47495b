import sys

from mla_core.cli import main

sys.exit(main())
