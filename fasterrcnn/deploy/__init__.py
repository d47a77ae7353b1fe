"""Deployment: torch.export / ONNX export of the inference model and onnxruntime checks.

``onnx_ops`` holds the ONNX translations of the fasterrcnn operators (it needs the optional
``onnx`` / ``onnxscript`` packages: ``pip install -e .[onnx]``).
"""
