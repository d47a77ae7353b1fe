"""Check a dataset, or write the shapes set as COCO / CSV / VOC; see fasterrcnn/commands/data.py."""

import sys

from fasterrcnn.commands.data import main

if __name__ == "__main__":
    sys.exit(main())
