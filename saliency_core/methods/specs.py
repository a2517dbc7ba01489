"""Method specifications: each hyperparameter is declared once, here-shaped, and every page,
the CLI and parameter validation are generated from these declarations."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from saliency_core.errors import ParameterError


def _is_module(value) -> bool:
    from torch import nn

    return isinstance(value, nn.Module)


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a method: what the pages' widgets and the CLI flags come from.

    Attributes:
        name: The keyword argument, e.g. "steps".
        type: "int", "float", "bool", "choice", "layer" or "method".
        default: The default for image models (``default_for("text")`` for text models).
        help: One line for tooltips and ``--help``.
        min: Smallest allowed value (numbers).
        max: Largest allowed value (numbers).
        step: The widgets' step (numbers).
        choices: Allowed values ("choice" and "method").
        text_choices: The values offered for text models, when they differ.
        label: The widgets' label (the name when empty).
        advanced: Shown under "advanced" in the pages.
        text_default: The default for text models, when it differs.
        accepts_tensor: Code may pass a tensor (or a number) instead of a named choice
            (baselines).
        type_name: The name of its choices' ``Literal`` in saliency_core.params ("choice"
            and "method"; empty: the name in CamelCase). With text choices the two are
            ``Image<type_name>`` and ``Text<type_name>``.

    Example:
        >>> import saliency_core as sc
        >>> steps = sc.get_method("integrated_gradients").param("steps")
        >>> steps.type, steps.validate(32)
        ('int', 32)
    """

    name: str
    type: str  # "int", "float", "bool", "choice", "layer", "method"
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple = ()
    text_choices: tuple = ()  # choices offered for text models, when they differ
    label: str = ""
    advanced: bool = False
    text_default: Any = None  # default for text models, when it differs
    accepts_tensor: bool = False  # code may pass a tensor instead of a named choice
    type_name: str = ""  # the Literal of its choices in saliency_core.params (generated)

    def choices_for(self, task: str = "image") -> tuple:
        """The allowed values for a model of this task (image or text).

        Args:
            task: "image" or "text".

        Returns:
            ``text_choices`` for text models when they differ, else ``choices``.
        """
        return self.text_choices if (task == "text" and self.text_choices) else self.choices

    def default_for(self, task: str = "image") -> Any:
        """The default for a model of this task (image or text).

        Args:
            task: "image" or "text".

        Returns:
            ``text_default`` for text models when set, else ``default``.
        """
        return self.text_default if (task == "text" and self.text_default is not None) else self.default

    def validate(self, value: Any, task: str = "image") -> Any:
        """The value coerced to this parameter's type and checked against its range or choices.

        Args:
            value: What a caller passed (strings such as "true" are accepted for booleans).
            task: "image" or "text" (text models may offer other choices).

        Returns:
            The coerced value.

        Raises:
            ParameterError: The value has the wrong type, is out of range or not a choice.
        """
        if self.type == "int":
            if isinstance(value, bool) or not _is_integral(value):
                raise ParameterError(f"{self.name} must be an integer, got {value!r}")
            value = int(value)
            self._check_range(value)
        elif self.type == "float":
            try:
                value = float(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: ints past 1e308
                raise ParameterError(f"{self.name} must be a number, got {value!r}") from None
            if math.isnan(value):
                raise ParameterError(f"{self.name} must be a number, got NaN")
            self._check_range(value)
        elif self.type == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                value = value.lower() in ("true", "1")
            if not isinstance(value, bool):
                raise ParameterError(f"{self.name} must be true or false, got {value!r}")
        elif self.type in ("choice", "method"):
            allowed = self.choices_for(task)
            if self.accepts_tensor and not isinstance(value, str):
                return value  # e.g. a tensor baseline given from code
            if value not in allowed:
                raise ParameterError(
                    f"{self.name} must be one of {', '.join(map(str, allowed))}; got {value!r}"
                )
        elif self.type == "layer" and not (value is None or isinstance(value, str)
                                           or _is_module(value)):
            raise ParameterError(
                f"{self.name} must be a module path such as 'layer4' or the module itself"
            )
        return value

    def _check_range(self, value):
        lo, hi = self.min, self.max
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ParameterError(f"{self.name}={value} is out of range; allowed: [{lo}, {hi}]")


def _is_integral(value) -> bool:
    try:
        return float(value) == int(value)
    except (TypeError, ValueError, OverflowError):
        return False


@dataclass(frozen=True)
class MethodSpec:
    """A method's declaration: name, family, parameters and where it applies.

    Attributes:
        name: The name ``attribute`` takes, e.g. "gradcam".
        label: The human name shown by the pages.
        description: One paragraph.
        family: "input" (maps of the input's shape) or "cam" (a map over the image).
        params: The method's ``Param``s.
        text: Whether it applies to text models.
        needs_relu: Whether it relies on ReLU activations (Guided Backprop, DeconvNet).
        reference: The paper.
        extra: Free-form facts for callers (the library itself reads none).
        params_type: The name of its keyword parameters' TypedDict in saliency_core.params,
            which is generated from the specs (methods sharing one declare the same
            parameters). Empty: the name in CamelCase plus "Params", or "EngineOptions" for
            a method without parameters.

    Example:
        >>> import saliency_core as sc
        >>> spec = sc.get_method("smoothgrad")
        >>> spec.family, spec.text, spec.defaults()["samples"]
        ('input', True, 32)
    """

    name: str
    label: str
    description: str
    family: str  # "input" (same shape as the input) or "cam" (a map over the image)
    params: tuple[Param, ...] = ()
    text: bool = False  # applies to text models (attribution in embedding space)
    needs_relu: bool = False
    reference: str = ""
    extra: dict = field(default_factory=dict)
    params_type: str = ""

    def __post_init__(self) -> None:
        if not self.params_type:
            name = ("".join(w.capitalize() for w in self.name.split("_")) + "Params"
                    if self.params else "EngineOptions")
            object.__setattr__(self, "params_type", name)

    def param(self, name: str) -> Param:
        """One parameter by name.

        Args:
            name: The keyword, e.g. "steps".

        Returns:
            Its ``Param``.

        Raises:
            KeyError: The method has no such parameter.
        """
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self, task: str = "image") -> dict[str, Any]:
        """Every parameter's default.

        Args:
            task: "image" or "text".

        Returns:
            Parameter name -> default for a model of this task (image or text).
        """
        return {p.name: p.default_for(task) for p in self.params}

    def validate(self, params: dict[str, Any], task: str = "image") -> dict[str, Any]:
        """The parameters with defaults filled in and every value checked.

        Args:
            params: Name -> value, as a caller gave them.
            task: "image" or "text".

        Returns:
            Every parameter of the method, coerced (``Param.validate``).

        Raises:
            ParameterError: A name the method does not have (never silently ignored), or a
                value ``Param.validate`` rejects.
        """
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ParameterError(
                f"{self.name} has no parameter {', '.join(unknown)}; "
                f"its parameters are: {', '.join(sorted(known)) or 'none'}"
            )
        out = {}
        for p in self.params:
            out[p.name] = p.validate(params.get(p.name, p.default_for(task)), task)
        return out
