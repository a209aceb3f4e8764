import sys

from afsearch.cli import main

sys.exit(main())
