"""Guided Backprop, DeconvNet and the rules they apply to the backward pass of ReLUs.

- ``backprop``: the two methods, and the choice of the fastest rule that is correct for a model;
- ``relu_rules``: the rule at the operator level (any model, Python in the backward pass);
- ``graph_rule`` and ``csrc/``: the rule as one native call per forward pass, built on first use.
"""
