"""Evaluate a trained detector on a test set (faster-rcnn.pytorch's test_net.py);
see fasterrcnn/commands/test.py."""

import sys

from fasterrcnn.commands.test import main

if __name__ == "__main__":
    sys.exit(main())
