import sys

from respan_auto.cli import main

sys.exit(main())
