"""Errors raised by saliency_core.

Every error a user can trigger with a bad choice is a ``SaliencyError`` (a ``ValueError``), so
callers such as the app can show its message instead of a traceback.
"""


class SaliencyError(ValueError):
    """A problem the user can fix by changing an input, a parameter or a choice.

    Every error the library raises for a bad choice is one of its subclasses (UnknownMethodError,
    ParameterError, TargetError, LayerError, InputShapeError, MethodNotApplicableError,
    ModelUnavailableError, CancelledError); its message is written to be shown to a user.

    Example:
        >>> import torch, saliency_core as sc
        >>> loaded = sc.load_model("shapes-cnn", device="cpu")
        >>> try:
        ...     sc.attribute(loaded, torch.rand(1, 3, 64, 64), "integrated_gradients", stepz=8)
        ... except sc.SaliencyError as error:
        ...     print(error)
        integrated_gradients has no parameter stepz; its parameters are: baseline, baseline_samples, quadrature, seed, steps
    """


class UnknownMethodError(SaliencyError):
    pass


class ParameterError(SaliencyError):
    pass


class TargetError(SaliencyError):
    pass


class LayerError(SaliencyError):
    pass


class InputShapeError(SaliencyError):
    pass


class MethodNotApplicableError(SaliencyError):
    """The method cannot run on this model (e.g. guided backprop on a GELU transformer)."""


class ModelUnavailableError(SaliencyError):
    """Weights are missing locally and cannot be fetched; the message names the fix."""


class CancelledError(SaliencyError):
    """The caller asked to stop a long computation."""
