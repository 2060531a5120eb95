"""Export: derived PyTorch models to validated ONNX files."""
