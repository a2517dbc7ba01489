"""Evaluation of attribution maps, one module per concern:

- ``maps``: attributions reduced to one 2-D map per sample;
- ``similarity``: how alike two maps are (Spearman, SSIM, HOG);
- ``faithfulness``: deletion and insertion curves;
- ``localization``: pointing game and mass inside a ground-truth mask;
- ``scoreboard``: methods ranked by those measures (the Compare page);
- ``clustering``: maps grouped into strategies (spectral relevance analysis) and embedded;
- ``completeness``: Integrated Gradients' completeness and automatic steps;
- ``randomization``: randomization units and seeded re-initialisation of a copy;
- ``sanity``: Adebayo et al.'s model- and data-randomization tests and their verdicts;
- ``sanity_inputs``, ``sanity_report``, ``sanity_figure``: the measured report (docs/SANITY.md)
  on the bundled models; its CLI is ``saliency_core/cli/sanity.py``.

The names below are the package's public surface, importable as ``saliency_core.evaluation.X``.
"""

from __future__ import annotations

from saliency_core.evaluation.clustering import MapClusters, cluster_maps, embed_maps
from saliency_core.evaluation.completeness import (
    AutoStepsResult,
    completeness,
    integrated_gradients_auto,
)
from saliency_core.evaluation.faithfulness import (
    DIRECTIONS,
    SUBSTRATES,
    PerturbationCurve,
    deletion,
    insertion,
    perturbation_curve,
    pixel_order,
    substrate_of,
)
from saliency_core.evaluation.localization import ENERGIES, mass_in_mask, pointing_game
from saliency_core.evaluation.maps import to_maps, unit_range
from saliency_core.evaluation.randomization import (
    DEFAULT_MAX_STEPS,
    RandomizationUnit,
    execution_order,
    model_copy,
    randomization_units,
    randomize_unit,
    randomized_copy,
    reinitialize,
    unit_seed,
)
from saliency_core.evaluation.sanity import (
    BORDERLINE,
    DEFAULT_THRESHOLD,
    VERDICT_METRIC,
    DataRandomizationResult,
    MapSet,
    RandomizationResult,
    Verdict,
    cascading_randomization,
    check_same_architecture,
    compute_maps,
    data_randomization,
    independent_randomization,
    parameter_randomization,
    verdict,
)
from saliency_core.evaluation.sanity_figure import write_figure
from saliency_core.evaluation.sanity_inputs import (
    IMAGE_SEED_BASE,
    RANDOM_LABEL_PAIRS,
    image_methods,
    partner_problem,
    random_labels_partner,
    shapes_inputs,
)
from saliency_core.evaluation.sanity_report import Report, run_report
from saliency_core.evaluation.scoreboard import scoreboard
from saliency_core.evaluation.similarity import (
    SIMILARITY_METRICS,
    hog_features,
    hog_similarity,
    similarities,
    spearman,
    ssim,
)

__all__ = [
    "BORDERLINE",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_THRESHOLD",
    "DIRECTIONS",
    "ENERGIES",
    "IMAGE_SEED_BASE",
    "RANDOM_LABEL_PAIRS",
    "SIMILARITY_METRICS",
    "SUBSTRATES",
    "VERDICT_METRIC",
    "AutoStepsResult",
    "DataRandomizationResult",
    "MapClusters",
    "MapSet",
    "PerturbationCurve",
    "RandomizationResult",
    "RandomizationUnit",
    "Report",
    "Verdict",
    "cascading_randomization",
    "check_same_architecture",
    "cluster_maps",
    "completeness",
    "compute_maps",
    "data_randomization",
    "deletion",
    "embed_maps",
    "execution_order",
    "hog_features",
    "hog_similarity",
    "image_methods",
    "independent_randomization",
    "insertion",
    "integrated_gradients_auto",
    "mass_in_mask",
    "model_copy",
    "parameter_randomization",
    "partner_problem",
    "perturbation_curve",
    "pixel_order",
    "pointing_game",
    "random_labels_partner",
    "randomization_units",
    "randomize_unit",
    "randomized_copy",
    "reinitialize",
    "run_report",
    "scoreboard",
    "shapes_inputs",
    "similarities",
    "spearman",
    "ssim",
    "substrate_of",
    "to_maps",
    "unit_range",
    "unit_seed",
    "verdict",
    "write_figure",
]
