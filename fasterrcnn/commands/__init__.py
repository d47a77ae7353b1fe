"""The command-line programs: ``train`` (tools/trainval_net.py, ``fasterrcnn-train``),
``test`` (tools/test_net.py, ``fasterrcnn-test``) and ``demo`` (tools/demo.py,
``fasterrcnn-demo``).  Each module has ``main(argv=None) -> int``."""
