import sys

from mla_core.train import main

sys.exit(main())
