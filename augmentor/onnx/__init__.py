"""Generators and discriminators as ONNX files, and sampling them with onnxruntime."""
