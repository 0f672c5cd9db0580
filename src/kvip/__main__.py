"""`python3 -m kvip ...` runs the `kvip` command (useful under sudo, where PATH may lack the script)."""

import sys

from kvip.cli.main import main

sys.exit(main())
