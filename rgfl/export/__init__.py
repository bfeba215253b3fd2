"""Taking a trained detector elsewhere: ONNX export (:mod:`rgfl.export.onnx`)."""
