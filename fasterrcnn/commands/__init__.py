"""The command-line programs: ``train`` (tools/trainval_net.py, ``fasterrcnn-train``),
``test`` (tools/test_net.py, ``fasterrcnn-test``), ``demo`` (tools/demo.py,
``fasterrcnn-demo``) and ``data`` (tools/data.py, ``fasterrcnn-data``).  Each module has
``main(argv=None) -> int``."""
