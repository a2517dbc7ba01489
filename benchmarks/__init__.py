"""Side-by-side performance of saliency_core against the floor, Captum, pytorch-grad-cam
and the naive loops of the user's reference document (``python -m benchmarks``)."""
