"""Guided Backprop, DeconvNet, Guided Grad-CAM and the rules they apply to the backward pass
of ReLUs.

- ``backprop``: the two methods, and the choice of the fastest rule that is correct for a model;
- ``gradcam``: Guided Grad-CAM, both maps from one forward pass on a fast path (CAM's layer
  machinery from methods.cam, which knows nothing of the guided rules);
- ``relu_rules``: the rule at the operator level (any model, Python in the backward pass);
- ``graph_rule`` and ``csrc/``: the rule as one native call per forward pass, built on first use.
"""
