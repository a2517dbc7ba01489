"""The procedural shapes data set and the CNN architecture of the bundled image models."""

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from saliency_core.training import shapes
from saliency_core.training.shapes_cnn import DEFAULT_LAYER, ShapesCNN, images_to_tensor


@pytest.fixture(scope="module")
def data():
    return shapes.generate(60, seed=7)


def test_arrays_have_documented_shapes_and_types(data):
    images, labels, masks = data
    assert images.shape == (60, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (60,) and labels.dtype == np.int64
    assert masks.shape == (60, 64, 64) and masks.dtype == bool
    assert data.watermark_masks is None and len(data) == 60
    assert set(labels.tolist()) == set(range(len(shapes.CLASS_NAMES)))


def test_same_seed_same_images_and_prefix_property(data):
    again = shapes.generate(10, seed=7)
    np.testing.assert_array_equal(again.images, data.images[:10])
    np.testing.assert_array_equal(again.masks, data.masks[:10])
    other = shapes.generate(10, seed=8)
    assert not np.array_equal(other.images, again.images)


def test_masks_cover_a_shape_that_stands_out_from_the_background(data):
    images, _, masks = data
    areas = masks.sum(axis=(1, 2))
    assert areas.min() > 40 and areas.max() < 0.6 * 64 * 64
    for image, mask in zip(images[:20].astype(float), masks[:20]):
        inside = image[mask].mean(axis=0)
        # Compare with the ring of background just around the shape, not the whole image.
        around = binary_dilation(mask, iterations=3) & ~mask
        outside = image[around].mean(axis=0)
        assert np.linalg.norm(inside - outside) > 40


def test_shapes_never_touch_the_watermark_corner(data):
    corner = data.masks[:, : shapes.CORNER_BOX, : shapes.CORNER_BOX]
    assert not corner.any()


def test_spurious_adds_the_class_code_and_only_changes_the_corner():
    plain = shapes.generate(30, seed=3)
    marked = shapes.generate(30, seed=3, spurious=True)
    images, labels, masks, wm_masks = marked
    np.testing.assert_array_equal(labels, plain.labels)
    np.testing.assert_array_equal(masks, plain.masks)
    np.testing.assert_array_equal(marked.watermark_labels, labels)
    box = slice(
        shapes.WATERMARK_OFFSET, shapes.WATERMARK_OFFSET + shapes.WATERMARK_SIZE
    )
    assert (
        wm_masks[:, box, box].all() and wm_masks.sum() == 30 * shapes.WATERMARK_SIZE**2
    )
    np.testing.assert_array_equal(images[~wm_masks], plain.images[~wm_masks])
    # The stamp is the class's black/white code, enlarged to WATERMARK_CELL pixels per cell.
    cell = shapes.WATERMARK_CELL
    for image, label in zip(images, labels):
        stamp = image[box, box, 0][::cell, ::cell] > 127
        np.testing.assert_array_equal(stamp, shapes.WATERMARK_CODES[label])


def test_conflicting_watermark_shows_another_class():
    data = shapes.generate(40, seed=4, spurious=True, watermark_conflicts=True)
    assert (data.watermark_labels != data.labels).all()


def test_watermark_codes_are_distinct():
    codes = {code.tobytes() for code in shapes.WATERMARK_CODES}
    assert len(codes) == len(shapes.CLASS_NAMES)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        shapes.generate(-1, seed=0)
    with pytest.raises(ValueError):
        shapes.generate(2, seed=0, size=16)


def test_other_sizes_work():
    images, _, masks = shapes.generate(3, seed=0, size=96)
    assert images.shape == (3, 96, 96, 3) and masks.any(axis=(1, 2)).all()


def test_cnn_maps_images_to_logits_with_a_spatial_last_block(data):
    model = ShapesCNN().eval()
    x = images_to_tensor(data.images[:4])
    assert x.shape == (4, 3, 64, 64)
    assert -2.1 <= x.min() and x.max() <= 2.1  # (pixels - 0.5) / 0.25
    seen = {}
    layer = dict(model.named_modules())[DEFAULT_LAYER]
    handle = layer.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    assert logits.shape == (4, len(shapes.CLASS_NAMES))
    assert seen["out"].shape == (4, 128, 8, 8)
    relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    assert any(r.inplace for r in relus) and any(not r.inplace for r in relus)
