import sys

from mla_core.train.cli import main

sys.exit(main())
