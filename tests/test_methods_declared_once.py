"""A method's extension points are declared once: its parameters in its spec (the typed
parameters in saliency_core/params.py are generated from the specs, and checked current), what
SmoothGrad may wrap as one capability, and Guided Grad-CAM with the guided rules, on top of
CAM's layer machinery rather than inside it."""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import typing

import pytest
import torch
from support.engine_models import images, small_cnn

import saliency_core as sc
from saliency_core import params as typed
from saliency_core.methods import REGISTRY, specs, typed_params, with_capability
from saliency_core.methods.specs import MethodSpec, Param

METHODS = pathlib.Path(__file__).resolve().parents[1] / "saliency_core" / "methods"


def test_the_committed_typed_parameters_are_the_generators_output():
    assert typed_params.current(), f"{typed_params.PARAMS_FILE} lost its GENERATED markers"
    assert typed_params.current() == typed_params.generate(), (
        f"saliency_core/params.py is out of date with the method specs: run {typed_params.COMMAND}")


def test_a_spec_change_without_regenerating_is_caught():
    """What the test above sees when a spec gains a parameter and the block is not rewritten."""
    changed = [dataclasses.replace(s, params=(*s.params, Param("window", "int", 3, "Width.")))
               if s.name == "integrated_gradients" else s for s in specs()]
    block = typed_params.generate(changed)
    assert block != typed_params.current()
    assert "    window: int\n" in block


def test_the_check_command_fails_on_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "params.py"
    stale.write_text(typed_params.PARAMS_FILE.read_text().replace("    steps: int\n", "", 1))
    assert typed_params.current(stale) != typed_params.generate()
    assert typed_params.write(stale) is True
    assert typed_params.current(stale) == typed_params.generate()
    assert typed_params.write(stale) is False  # already current: the file is left alone
    assert typed_params.main(["--check"]) == 0


def test_a_new_method_gets_its_typed_dict_from_its_spec_alone():
    occlusion = MethodSpec("occlusion", "Occlusion", "Patches hidden in turn.", "input",
                           params=(Param("patch", "int", 8, "Patch side."),
                                   Param("fill", "choice", "zeros", "What hides a patch.",
                                         choices=("zeros", "blur"))))
    block = typed_params.generate([*specs(), occlusion])
    assert occlusion.params_type == "OcclusionParams"
    assert "class OcclusionParams(EngineOptions, total=False):" in block
    assert 'Fill = Literal["zeros", "blur"]' in block and "    fill: Fill\n" in block
    assert MethodSpec("plain", "Plain", "", "input").params_type == "EngineOptions"


def test_conflicting_declarations_are_refused_with_what_to_change():
    first = MethodSpec("a_cam", "A", "", "cam", params=(Param("layer", "layer", None, "L"),),
                       params_type="CamParams")
    with pytest.raises(ValueError, match="params_type"):
        typed_params.generate([*specs(), first])
    other_choices = MethodSpec("b", "B", "", "input", params=(
        Param("variant", "choice", "x", "V", choices=("x", "y"), type_name="SmoothVariant"),))
    with pytest.raises(ValueError, match="type_name"):
        typed_params.generate([*specs(), other_choices])


def test_runtime_tables_are_read_from_the_specs():
    assert set(typed.PARAMS_BY_METHOD) == set(REGISTRY)  # order: another test deletes and restores one
    for name, method in REGISTRY.items():
        assert typed.PARAMS_BY_METHOD[name].__name__ == method.spec.params_type
    assert typed.PARAMS_BY_METHOD["gradient"] is typed.EngineOptions
    assert typed.PARAMS_BY_METHOD["layercam"] is typed.CamParams


# --- what SmoothGrad wraps -------------------------------------------------------------------

SMOOTHABLE = with_capability("smoothable")


def test_one_list_of_what_smoothgrad_wraps():
    base = sc.get_method("smoothgrad").param("base")
    assert list(base.choices) == SMOOTHABLE
    assert list(base.text_choices) == [m for m in SMOOTHABLE if REGISTRY[m].spec.text]
    assert set(typing.get_args(typed.SmoothBase)) == set(SMOOTHABLE)
    # Every input-space method that is not itself a wrapper, Guided Grad-CAM included.
    assert SMOOTHABLE == [m.name for m in REGISTRY.values()
                          if m.spec.family == "input" and not m.wraps]
    assert "guided_gradcam" in SMOOTHABLE


@pytest.mark.parametrize("base", SMOOTHABLE)
def test_smoothgrad_runs_over_each_base_and_is_deterministic_with_a_seed(base):
    model, x = small_cnn(), images(2)
    extra = {"layer": "features.5"} if REGISTRY[base].needs_layer else {}
    if REGISTRY[base].refine_count == "steps":
        extra["steps"] = 4

    def run(seed):
        return sc.attribute(model, x, "smoothgrad", target=1, samples=3, sigma=0.1, seed=seed,
                            base=base, **extra)

    first, again, other = run(2), run(2), run(3)
    assert first.shape == x.shape and torch.isfinite(first).all()
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


# --- Guided Grad-CAM lives with the guided rules ------------------------------------------------

def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_cam_knows_nothing_of_the_guided_rules_and_guided_gradcam_builds_on_cam():
    assert not [m for m in _imports(METHODS / "cam.py") if "guided" in m]
    assert "saliency_core.methods.cam" in _imports(METHODS / "guided" / "gradcam.py")
    assert REGISTRY["guided_gradcam"].compute.__module__ == "saliency_core.methods.guided.gradcam"
