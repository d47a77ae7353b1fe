"""Train a Faster R-CNN detector (faster-rcnn.pytorch's trainval_net.py);
see fasterrcnn/commands/train.py."""

import sys

from fasterrcnn.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
