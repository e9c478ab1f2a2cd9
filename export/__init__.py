"""Export trained CMAL checkpoints to ONNX and TorchScript graphs, and prove they match."""
