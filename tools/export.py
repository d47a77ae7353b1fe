"""Export a trained detector to ONNX or a .pt2 archive; see fasterrcnn/commands/export.py."""

import sys

from fasterrcnn.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
