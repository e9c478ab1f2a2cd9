"""The CMAL inference service (FastAPI). Its ONNX path must not import torch."""
