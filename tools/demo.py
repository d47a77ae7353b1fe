"""Draw a detector's detections on every image of a folder (faster-rcnn.pytorch's demo.py);
see fasterrcnn/commands/demo.py."""

import sys

from fasterrcnn.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
